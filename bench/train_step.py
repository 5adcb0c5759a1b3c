"""Time split of one TACO-RL training step: encoder forward, sampling + text, LLM + reward,
loss, backward + optimiser step — and the share of the step that is not the LLM.

Uses real prompts from ../shared/data/<task>/dev.jsonl (``--data`` elsewhere), the
compressor and LLM of params.yaml (default: the embedded MiniLM policy and SmolLM2-135M with
the `loglik` reward). On CUDA each phase ends with a synchronize. Teacher outputs for the
prompts are computed first (and cached).

    .venv/bin/python bench/train_step.py                       # code, bf16 auto, params' k
    .venv/bin/python bench/train_step.py --task qa --fp32      # fp32 encoder
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PHASES = ("encoder_forward", "sample_and_text", "llm_and_reward", "loss", "backward_and_step")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", default=str(ROOT / "params.yaml"))
    ap.add_argument("--task", default="code", choices=("code", "qa", "summarization"))
    ap.add_argument("--model", default=None, help="compressor folder (default: warm start/base)")
    ap.add_argument("--steps", type=int, default=6, help="timed steps (after 1 warm-up)")
    ap.add_argument("--prompts", type=int, default=None, help="prompts per step (params')")
    ap.add_argument("--k", type=int, default=None, help="samples per prompt (params')")
    ap.add_argument("--fp32", action="store_true", help="no bf16 autocast for the encoder")
    ap.add_argument("--reward", default=None, choices=("loglik", "taco_rl"))
    ap.add_argument(
        "--data", default=str(ROOT.parent / "shared" / "data"), help="folder with <task>/dev.jsonl"
    )
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)

    import dataclasses

    from taco.compress.compressor import Compressor
    from taco.config import load_params
    from taco.data.ingest import load_shared
    from taco.data.schema import Example
    from taco.llm import build_llm
    from taco.rl.optim import adamw, freeze_for_rl, training_attention
    from taco.rl.rows import TrainRow
    from taco.rl.train import Timer, set_budget_units, start_model, train_step
    from taco.tasks.registry import get_task
    from taco.tasks.teacher import teacher_outputs

    params = load_params(args.params)
    args.prompts = args.prompts or params.train.prompts_per_step
    args.k = args.k or params.train.samples_per_prompt
    train_over = {"prompts_per_step": args.prompts, "samples_per_prompt": args.k}
    if args.fp32:
        train_over["bf16"] = False
    params = dataclasses.replace(
        params,
        train=dataclasses.replace(params.train, **train_over),
        base=dataclasses.replace(params.base, task=args.task),
    )
    if args.reward:
        params = dataclasses.replace(
            params, reward=dataclasses.replace(params.reward, name=args.reward)
        )
    dev = Path(args.data) / args.task / "dev.jsonl"
    n = args.prompts * (args.steps + 1)
    examples = [
        Example(task=args.task, **r) for _, r in zip(range(n), load_shared(dev), strict=False)
    ]
    llm = build_llm(params.llm)
    task = get_task(args.task, params)
    t = time.perf_counter()
    outs = teacher_outputs(llm, task, examples, max_new_tokens=params.llm.max_new_tokens)
    lengths = llm.count_tokens([e.context for e in examples])
    print(f"teacher outputs for {n} prompts: {time.perf_counter() - t:.1f} s (cached after)")
    rows = [TrainRow(e, o or "", c) for e, o, c in zip(examples, outs, lengths, strict=True)]
    model = args.model or start_model(params, ROOT)
    comp = Compressor.from_pretrained(
        model, max_seq_len=params.train.max_seq_len, position_prior=params.train.position_prior
    )
    p = params.train
    set_budget_units(comp, llm, p.budget_tokens)
    freeze_for_rl(comp.model, embeddings=p.freeze_embeddings, train_layers=p.train_layers)
    training_attention(comp.model, comp.device)
    opt = adamw(comp.model, p.lr, p.head_lr, p.weight_decay)
    gen = torch.Generator(device=comp.device).manual_seed(0)
    totals: list[dict[str, float]] = []
    for step in range(args.steps + 1):
        timer = Timer(comp.device)
        batch = rows[step * args.prompts : (step + 1) * args.prompts]
        t0 = time.perf_counter()
        loss, _ = train_step(
            comp, batch, llm=llm, task=task, params=params, generator=gen, timer=timer
        )
        with timer("backward_and_step"):
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(comp.model.parameters(), p.grad_clip)
            opt.step()
        timer.seconds["step"] = time.perf_counter() - t0
        if step:  # the first step warms up kernels and caches
            totals.append(timer.seconds)
    med = {k: statistics.median(s[k] for s in totals) for k in (*PHASES, "step")}
    print(
        f"device={comp.device} bf16={p.bf16} task={args.task} reward={params.reward.name} "
        f"prompts={args.prompts} k={args.k} steps={args.steps} model={model or 'embedded'}"
    )
    print(f"{'phase':<20}{'median s':>10}{'share':>9}")
    for k in PHASES:
        print(f"{k:<20}{med[k]:>10.3f}{med[k] / med['step']:>9.1%}")
    print(f"{'step':<20}{med['step']:>10.3f}{1:>9.1%}")
    overhead = 1 - med["llm_and_reward"] / med["step"]
    total = 1 - sum(s["llm_and_reward"] for s in totals) / sum(s["step"] for s in totals)
    samples = args.prompts * args.k
    print(
        f"non-LLM overhead: {overhead:.1%} of the median step, {total:.1%} of all timed steps; "
        f"{samples / med['step']:.2f} samples/s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
