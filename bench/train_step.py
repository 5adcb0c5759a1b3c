"""Time split of one TACO-RL training step: encoder forward, sampling + text, LLM + reward,
loss, backward + optimiser step — and the share of the step that is not the LLM — for every
encoder precision (fp32, bf16 autocast) and reward-LLM path (float32, bfloat16, int8) in the
same run, steps interleaved.

Uses real prompts from ../shared/data/<task>/dev.jsonl (``--data`` elsewhere), the
compressor and LLM of params.yaml (default: the embedded MiniLM policy and SmolLM2-135M with
the `loglik` reward). On CUDA each phase ends with a synchronize. Teacher outputs for the
prompts are computed first with params' LLM (and cached); the reward LLMs run uncached. Each
configuration trains its own copy of the compressor. The header says where it ran (CPU
model and flags, torch threads, the paths ``auto`` picks).

    .venv/bin/python bench/train_step.py                       # code, every path
    .venv/bin/python bench/train_step.py --task qa --encoder fp32 --llm-dtypes float32,int8
    .venv/bin/python bench/train_step.py --slow-kind           # as a CPU without AVX-512/VNNI/bf16
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
from pathlib import Path

import torch
from cpu_kind import describe, parse_args

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
    ap.add_argument("--encoder", default="fp32,bf16", help="encoder paths: fp32 and/or bf16")
    ap.add_argument("--llm-dtypes", default="float32,bfloat16,int8", help="reward-LLM paths")
    ap.add_argument("--reward", default=None, choices=("loglik", "taco_rl"))
    ap.add_argument(
        "--data", default=str(ROOT.parent / "shared" / "data"), help="folder with <task>/dev.jsonl"
    )
    args = parse_args(ap)
    logging.basicConfig(level=logging.WARNING)

    import copy
    import dataclasses

    from taco.compress.compressor import Compressor
    from taco.config import load_params
    from taco.data.ingest import load_shared
    from taco.data.schema import Example
    from taco.llm.base import build_llm
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
    task = get_task(args.task, params)
    teacher_llm = build_llm(params.llm)
    t = time.perf_counter()
    outs = teacher_outputs(teacher_llm, task, examples, max_new_tokens=params.llm.max_new_tokens)
    lengths = teacher_llm.count_tokens([e.context for e in examples])
    print(f"teacher outputs for {n} prompts: {time.perf_counter() - t:.1f} s (cached after)")
    rows = [TrainRow(e, o or "", c) for e, o, c in zip(examples, outs, lengths, strict=True)]
    model = args.model or start_model(params, ROOT)
    p = params.train
    base = Compressor.from_pretrained(
        model, max_seq_len=p.max_seq_len, position_prior=p.position_prior
    )
    llms = {
        d: build_llm(dataclasses.replace(params.llm, dtype=d), cache=False)
        for d in args.llm_dtypes.split(",")
    }
    where = f"params' LLM (teacher): {dict(teacher_llm.identity).get('dtype')}"
    print("\n".join(describe(f"{where}; timed: encoder {args.encoder} × LLM {args.llm_dtypes}")))
    configs = {}  # (encoder path, llm path) -> (params, compressor, optimizer, generator, llm)
    for enc in args.encoder.split(","):
        for d, llm in llms.items():
            comp = copy.deepcopy(base)
            set_budget_units(comp, llm, p.budget_tokens)
            freeze_for_rl(comp.model, embeddings=p.freeze_embeddings, train_layers=p.train_layers)
            training_attention(comp.model, comp.device)
            sec = dict(params.sections)
            sec["train"] = dataclasses.replace(p, bf16=enc == "bf16")
            sec["llm"] = dataclasses.replace(params.llm, dtype=d)
            gen = torch.Generator(device=comp.device).manual_seed(0)
            opt = adamw(comp.model, p.lr, p.head_lr, p.weight_decay)
            configs[(enc, d)] = (type(params)(sec), comp, opt, gen, llm)
    totals: dict[tuple[str, str], list[dict[str, float]]] = {c: [] for c in configs}
    for step in range(args.steps + 1):
        batch = rows[step * args.prompts : (step + 1) * args.prompts]
        for key, (cfg, comp, opt, gen, llm) in configs.items():
            timer = Timer(comp.device)
            t0 = time.perf_counter()
            loss, _ = train_step(
                comp, batch, llm=llm, task=task, params=cfg, generator=gen, timer=timer
            )
            with timer("backward_and_step"):
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(comp.model.parameters(), p.grad_clip)
                opt.step()
            timer.seconds["step"] = time.perf_counter() - t0
            if step:  # the first step warms up kernels and caches
                totals[key].append(timer.seconds)
    print(
        f"device={base.device} task={args.task} reward={params.reward.name} "
        f"prompts={args.prompts} k={args.k} steps={args.steps} model={model or 'embedded'}"
    )
    print(f"\n| encoder | LLM | {' | '.join(PHASES)} | step s | non-LLM share | samples/s |")
    print(f"|---|---|{'---:|' * (len(PHASES) + 3)}")
    samples = args.prompts * args.k
    for (enc, d), steps in totals.items():
        med = {k: statistics.median(s[k] for s in steps) for k in (*PHASES, "step")}
        overhead = 1 - med["llm_and_reward"] / med["step"]
        cells = " | ".join(f"{med[k]:.3f}" for k in PHASES)
        print(
            f"| {enc} | {d} | {cells} | {med['step']:.3f} | {overhead:.1%} "
            f"| {samples / med['step']:.2f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
