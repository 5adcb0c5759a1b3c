"""The `train` stage: TACO-RL — REINFORCE fine-tuning of the compressor against a target LLM.

One readable loop (``train``): seed → model → for each step: sample k masks per prompt →
compressed prompts → LLM → reward → advantage → loss → optimiser step → log. Rewards come from
the registry in taco/rl/rewards.py (``reward.name``); unscorable samples get zero advantage and
are counted. AdamW with a separate, higher learning rate for the keep/drop head, a cosine
schedule with optional warm-up, gradient clipping, bf16 autocast where the hardware has it.

Resumable: every ``train.checkpoint_every`` steps the model, optimiser, scheduler and RNG
states go to ``<data_dir>/checkpoints/train/``; rerunning after a crash (even ``kill -9``)
continues from there when config, data and start model are unchanged. Data-parallel under
``torchrun --nproc_per_node=N -m taco train``: each rank takes its share of the step's prompts
(and so of the LLM calls), gradients are averaged with one all-reduce, only rank 0 logs and
writes. Logs go to DVCLive in ``<data_dir>/reports/train/``; the final model (weights,
tokenizer, ``taco_run.json``) to ``<data_dir>/models/taco/``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from taco.compress.compressor import Compressor
from taco.config import ConfigError, Params, TrainParams, to_dict
from taco.errors import StageFailed, UserError
from taco.layout import RUN_RECORD, Layout
from taco.rl import policy
from taco.rl.checkpoint import (
    data_versions,
    git_commit,
    is_compressor,
    load_checkpoint,
    rng_state,
    run_fingerprint,
    save_checkpoint,
    save_model_atomic,
    set_rng_state,
    weights_digest,
)
from taco.rl.distributed import (
    Ranks,
    all_sum,
    broadcast_parameters,
    init_ranks,
    launch,
    sync_gradients,
    under_torchrun,
)
from taco.rl.optim import adamw, autocast, freeze_for_rl, training_attention
from taco.rl.reinforce import (
    advantages,
    policy_loss,
    rewards_tensor,
    sequence_entropy,
    sequence_log_prob,
)
from taco.rl.rows import TrainError, TrainRow, batch_indices, load_rows

if TYPE_CHECKING:
    from dvclive import Live

    from taco.llm.base import LLM
    from taco.rl.rewards import RewardResult
    from taco.tasks.registry import TaskSpec

log = logging.getLogger(__name__)

# Sums all-reduced over ranks each step, in this order.
_SUMS = (
    "reward_sum",
    "scored",
    "unscorable",
    "samples",
    "rate_sum",
    "entropy_sum",
    "loss_sum",
    "prompts",
    "greedy_sum",
    "greedy_scored",
)


def start_model(params: Params, root: Path = Path(".")) -> str | None:
    """``train.base_model`` when it is a compressor, else the warm start when there is one
    (and ``warmstart.labels`` is not ``none``), else the base model (embedded MiniLM when
    null) with its fresh head."""
    base = params.train.base_model
    if is_compressor(base):
        return base
    if params.warmstart.labels == "none":
        log.info("warmstart.labels: none — training starts from a fresh keep/drop head")
        return base
    warm = Layout.of(params, root).warmstart_model
    if (warm / "config.json").is_file():
        return str(warm)
    log.warning("no warm start in %s: training starts from a fresh keep/drop head", warm)
    return base


def cosine_schedule(
    opt: torch.optim.Optimizer, p: TrainParams
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up over ``warmup_steps``, then cosine decay to 0 at ``steps``."""

    def factor(step: int) -> float:
        if step < p.warmup_steps:
            return (step + 1) / p.warmup_steps
        progress = (step - p.warmup_steps) / max(1, p.steps - p.warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


class Timer:
    """Wall-clock seconds per named phase of a step. On CUDA each phase ends with a device
    synchronize, so queued kernels are charged to the phase that launched them."""

    def __init__(self, device: torch.device | None = None) -> None:
        self.seconds: dict[str, float] = {}
        self._sync = device is not None and device.type == "cuda"

    @contextlib.contextmanager
    def __call__(self, name: str):  # type: ignore[no-untyped-def]
        t = time.perf_counter()
        try:
            yield
        finally:
            if self._sync:
                torch.cuda.synchronize()
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - t


def set_budget_units(compressor: Compressor, llm: LLM, units: str) -> None:
    """Count ``compressor``'s budgets (sampling, ``reward/val``, the bench) in the reward
    LLM's tokens (``units`` "llm", ``train.budget_tokens``: the reward's L_o and L_c, so RL
    cannot gain by keeping words the encoder counts as cheaper than the LLM reads them) or
    the encoder's ("encoder")."""
    from taco.llm.base import LLMTokenCounter

    compressor.token_counter = LLMTokenCounter(llm) if units == "llm" else None


def train_step(
    compressor: Compressor,
    rows: Sequence[TrainRow],
    *,
    llm: LLM,
    task: TaskSpec,
    params: Params,
    generator: torch.Generator,
    timer: Timer,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Sample → compress → LLM → reward → advantage → loss for this rank's prompts.

    Returns the loss (not yet backpropagated) and per-step sums for logging.
    """
    p: TrainParams = params.train
    k = p.samples_per_prompt
    with timer("encoder_forward"), autocast(compressor.device, p.bf16):
        docs = policy.prepare(
            compressor, [r.example.context for r in rows], [r.example.question for r in rows]
        )
        enc = policy.encode(
            compressor, docs, level=p.level, force_tokens=p.force_tokens, keep_digits=p.keep_digits
        )
    keep_newlines = "\n" in p.force_tokens
    with timer("sample_and_text"):
        if p.sampling == "budget":
            rate = p.rate if p.rate is not None else params.reward.rate
            actions, logp = policy.sample_budget(
                enc,
                k,
                rate,
                generator,
                p.unit,
                keep_newlines=keep_newlines,
                temperature=p.temperature,
                position_prior=compressor.position_prior,
            )
        else:
            actions = policy.sample(enc, k, generator)
        samples = policy.build(enc, actions, keep_newlines=keep_newlines)
        texts = [t for row in samples.texts for t in row]
        # self-critical baseline: each prompt's deployed compression, scored alongside
        greedy = deployed_texts(compressor, rows, params) if p.baseline == "greedy" else []
        compressed = llm.count_tokens(texts + greedy) if texts else []
    n = len(texts)
    scored_rows = [r for r in rows for _ in range(k)] + (list(rows) if greedy else [])
    with timer("llm_and_reward"):
        result = row_rewards(
            texts + greedy, compressed, scored_rows, llm=llm, task=task, params=params
        )
    with timer("loss"):
        rewards = rewards_tensor([result.rewards[i * k : (i + 1) * k] for i in range(len(rows))])
        valid = ~torch.isnan(rewards)
        base = rewards_tensor([result.rewards[n:]])[0] if greedy else None
        adv = advantages(rewards, p.baseline, p.normalize_advantages, greedy=base)
        adv = adv.to(compressor.device)
        if p.sampling == "bernoulli":
            logp = sequence_log_prob(enc.logp_keep, enc.logp_drop, actions, enc.mask, p.logprob)
        entropy = sequence_entropy(enc.logp_keep, enc.logp_drop, enc.mask)
        loss, _ = policy_loss(logp, adv, entropy, p.entropy_coef, valid.to(compressor.device))
    scored = [r for r in result.rewards[:n] if r is not None]
    greedy_scored = [r for r in result.rewards[n:] if r is not None]
    rates = [
        c / max(r.context_tokens, 1) for c, r in zip(compressed[:n], scored_rows[:n], strict=True)
    ]
    sums = {
        "reward_sum": float(sum(scored)),
        "scored": float(len(scored)),
        "unscorable": float(n - len(scored)),
        "samples": float(n),
        "rate_sum": float(sum(rates)),
        "entropy_sum": float(entropy.detach().sum()),
        "loss_sum": float(loss.detach()) * len(rows),
        "prompts": float(len(rows)),
        "greedy_sum": float(sum(greedy_scored)),
        "greedy_scored": float(len(greedy_scored)),
    }
    return loss, sums


def row_rewards(
    texts: Sequence[str],
    compressed_tokens: Sequence[int],
    rows: Sequence[TrainRow],
    *,
    llm: LLM,
    task: TaskSpec,
    params: Params,
) -> RewardResult:
    """``reward.name``'s rewards of the compressed contexts ``texts``, one per row of
    ``rows`` (``compressed_tokens``: their lengths in the LLM's tokens, L_c), scored with
    each row's question, L_o, teacher output and references."""
    from taco.rl.rewards import compute_rewards

    return compute_rewards(
        params.reward.name,
        llm,
        task,
        compressed_contexts=texts,
        questions=[r.example.question for r in rows],
        original_tokens=[r.context_tokens for r in rows],
        compressed_tokens=compressed_tokens,
        teacher_outputs=[r.teacher for r in rows],
        references=[r.example.references for r in rows],
        params=params.reward,
        max_new_tokens=params.llm.max_new_tokens,
    )


def deployed_texts(compressor: Compressor, rows: Sequence[TrainRow], params: Params) -> list[str]:
    """What inference would deploy for ``rows``: ``Compressor.compress`` at the target rate
    (greedy, budgeted, no autograd)."""
    p: TrainParams = params.train
    rate = p.rate if p.rate is not None else params.reward.rate
    with torch.inference_mode(), autocast(compressor.device, p.bf16):
        results = compressor.compress_many(
            [r.example.context for r in rows],
            rate=rate,
            force_tokens=p.force_tokens,
            keep_digits=p.keep_digits,
            questions=[r.example.question for r in rows],
        )
    return [r.compressed_prompt for r in results]


def validation_reward(
    compressor: Compressor, rows: Sequence[TrainRow], *, llm: LLM, task: TaskSpec, params: Params
) -> float:
    """Mean reward of what inference would deploy: ``Compressor.compress`` at the target
    rate (greedy, budgeted), on fixed validation rows — a learning curve free of sampling
    and batch-composition noise."""
    texts = deployed_texts(compressor, rows, params)
    result = row_rewards(texts, llm.count_tokens(texts), rows, llm=llm, task=task, params=params)
    scored = [x for x in result.rewards if x is not None]
    return sum(scored) / len(scored) if scored else math.nan


def step_metrics(sums: dict[str, float], llm: LLM, seconds: float) -> dict[str, float]:
    """The logged metrics of one step from summed counters (all ranks)."""
    n = max(sums["samples"], 1.0)
    llm_metrics = llm.metrics() if hasattr(llm, "metrics") else {}
    return {
        "reward/mean": sums["reward_sum"] / sums["scored"] if sums["scored"] else math.nan,
        "reward/unscorable": sums["unscorable"] / n,
        "compression/rate": sums["rate_sum"] / n,
        "policy/entropy": sums["entropy_sum"] / max(sums["prompts"], 1.0),
        "loss/policy": sums["loss_sum"] / max(sums["prompts"], 1.0),
        "llm/calls": float(llm_metrics.get("llm/calls", 0.0)),
        "llm/cache_hit_rate": float(llm_metrics.get("llm/cache_hit_rate", 0.0)),
        "perf/samples_per_s": sums["samples"] / max(seconds, 1e-9),
    } | (  # train.baseline greedy: the deployed compression's reward on the step's prompts
        {"reward/greedy": sums["greedy_sum"] / sums["greedy_scored"]}
        if sums.get("greedy_scored")
        else {}
    )


def _truncate_history(reports: Path, last_step: int) -> None:
    """Drop DVCLive rows logged after the checkpoint we resume from (they are redone)."""
    for tsv in (reports / "plots" / "metrics").rglob("*.tsv"):
        lines = tsv.read_text(encoding="utf-8").splitlines(keepends=True)
        if not lines:
            continue
        col = lines[0].rstrip("\n").split("\t").index("step")
        kept = [lines[0]] + [ln for ln in lines[1:] if int(ln.split("\t")[col]) <= last_step]
        tsv.write_text("".join(kept), encoding="utf-8")


def _drop_torn_summary(summary: Path) -> None:
    """A ``kill -9`` while DVCLive rewrites its summary leaves it empty or cut, and DVCLive's
    resume then fails to parse it: drop it (it only holds the latest values and is written
    again at the next step; the history is in the .tsv files)."""
    try:
        json.loads(summary.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return
    except ValueError:
        log.warning("dropping %s: cut short by the crash (rewritten at the next step)", summary)
        summary.unlink()


def _open_live(reports: Path, resume_step: int | None) -> Live | None:
    try:
        from dvclive import Live
    except ImportError:  # a bare GPU box: the curve is still in taco_run.json
        log.warning("dvclive is not installed: no DVCLive metrics or plots for this run")
        return None

    if resume_step is not None:
        _truncate_history(reports, resume_step - 1)
        _drop_torn_summary(reports / "metrics.json")
    elif reports.exists():
        shutil.rmtree(reports)
    live = Live(dir=str(reports), resume=resume_step is not None, save_dvc_exp=False, dvcyaml=None)
    live.step = resume_step or 0
    return live


def train(
    params: Params, root: Path = Path("."), *, llm: LLM | None = None, progress: bool = True
) -> dict[str, Any]:
    """Run TACO-RL training; returns the run record written to ``taco_run.json``."""
    from tqdm.auto import tqdm

    from taco.llm import build_llm
    from taco.tasks.registry import get_task

    p: TrainParams = params.train
    layout = Layout.of(params, root)
    ranks, device = init_ranks(p.device)
    if p.prompts_per_step < ranks.world:
        raise TrainError(
            f"train.prompts_per_step={p.prompts_per_step} is smaller than the {ranks.world} ranks"
        )
    # seed → data → model
    torch.manual_seed(params.base.seed + ranks.rank)
    rows = load_rows(params, root)
    task = get_task(params.base.task, params)
    start = start_model(params, root)
    config = to_dict(params)
    fingerprint = run_fingerprint(
        {**config, "world_size": ranks.world}, rows, Path(start) if start else None
    )
    compressor = Compressor.from_pretrained(
        start,
        device=str(device),
        max_seq_len=p.max_seq_len,
        unit=p.unit,
        position_prior=p.position_prior,
    )
    if compressor.position_prior and p.sampling != "budget":
        raise ConfigError(
            f"train.sampling: bernoulli cannot train {start}, which ranks with a position prior "
            f"of {compressor.position_prior}; set train.position_prior: 0 or sampling: budget"
        )
    model = compressor.model  # eval mode: no dropout, so sampling and log-probs agree
    broadcast_parameters(model, ranks)
    freeze_for_rl(model, embeddings=p.freeze_embeddings, train_layers=p.train_layers)
    training_attention(model, compressor.device)
    optimizer = adamw(model, p.lr, p.head_lr, p.weight_decay)
    scheduler = cosine_schedule(optimizer, p)
    generator = torch.Generator(device=device).manual_seed(params.base.seed * 1000 + ranks.rank)
    first, bad_steps = 0, 0
    best: dict[str, Any] | None = None  # train.keep: best_val — its step, reward/val, weights
    # every step's metrics and the reward/val points since step 0: a resumed run takes the
    # ones before its checkpoint from it, so the run record spans the whole run
    history: list[dict[str, float]] = []
    val_curve: list[tuple[int, float]] = []
    state = load_checkpoint(layout.train_checkpoints, fingerprint)
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        rank_state = state["ranks"][ranks.rank]
        set_rng_state(rank_state["rng"])
        generator.set_state(rank_state["generator"])
        first, bad_steps = int(state["step"]), int(state["bad_steps"])
        best = state.get("best")
        history = list(state.get("history", []))  # none in a checkpoint from before they were kept
        val_curve = [(int(s), float(v)) for s, v in state.get("val_curve", [])]
        if ranks.main:
            log.info("resuming from step %d (%s)", first, layout.train_checkpoints)
    llm = llm or build_llm(params.llm)
    set_budget_units(compressor, llm, p.budget_tokens)
    val_rows: list[TrainRow] = []
    if ranks.main and p.eval_rows:
        try:
            val_rows = load_rows(params, root, "val")[: p.eval_rows]
        except UserError as exc:
            log.warning("no validation rewards: %s", exc)
    live = (
        _open_live(layout.train_reports, first if state is not None else None)
        if ranks.main
        else None
    )
    if ranks.main:
        log.info(
            "train: %d rows, start model %s, config %s",
            len(rows),
            start or "embedded",
            config["train"],
        )
    trainable = [q for q in model.parameters() if q.requires_grad]
    started = time.perf_counter()
    bar = tqdm(
        total=p.steps,
        initial=first,
        desc="train",
        unit="step",
        disable=not (progress and ranks.main),
    )
    for step in range(first, p.steps):
        val = None
        if val_rows and step % p.eval_every == 0:  # the policy before this step's update
            val = validation_reward(compressor, val_rows, llm=llm, task=task, params=params)
            val_curve.append((step, val))
            best = _better(best, step, val, model, p.keep)
        t0 = time.perf_counter()
        timer = Timer(compressor.device)
        idx = batch_indices(len(rows), step, p.prompts_per_step, params.base.seed)[
            ranks.rank :: ranks.world
        ]
        loss, sums = train_step(
            compressor, [rows[i] for i in idx], llm=llm, task=task, params=params,
            generator=generator, timer=timer,
        )  # fmt: skip
        with timer("backward_and_step"):
            optimizer.zero_grad(set_to_none=True)
            finite = torch.isfinite(loss.detach())
            if bool(finite):
                loss.backward()
                sync_gradients(trainable, ranks)
                norm = torch.nn.utils.clip_grad_norm_(trainable, p.grad_clip)
                finite = finite & torch.isfinite(norm)
            ok = all_sum([float(bool(finite))], ranks, device)[0] == ranks.world
            if ok:
                optimizer.step()
            else:
                bad_steps += 1
                optimizer.zero_grad(set_to_none=True)
                log.warning(
                    "step %d: non-finite loss or gradient, skipped (%d so far)", step + 1, bad_steps
                )
            scheduler.step()
        totals = dict(zip(_SUMS, all_sum([sums[k] for k in _SUMS], ranks, device), strict=True))
        metrics = step_metrics(totals, llm, time.perf_counter() - t0)
        metrics["train/bad_steps"] = float(bad_steps)
        metrics["train/lr_head"] = scheduler.get_last_lr()[-1]
        metrics.update({f"perf/{k}_s": v for k, v in timer.seconds.items()})
        if val is not None:
            metrics["reward/val"] = val
        history.append(metrics)
        if live is not None:
            for name, value in metrics.items():
                if math.isfinite(value):
                    live.log_metric(name, value)
            live.next_step()
        bar.update(1)
        bar.set_postfix(
            reward=f"{metrics['reward/mean']:.3f}", rate=f"{metrics['compression/rate']:.2f}"
        )
        if bad_steps > p.max_bad_steps:
            raise TrainError(
                f"{bad_steps} steps had a non-finite loss (train.max_bad_steps={p.max_bad_steps})"
            )
        done = step + 1
        if done % p.checkpoint_every == 0 or done == p.steps:
            rng = _gather_rng(generator, ranks)  # collective: every rank takes part
            if ranks.main:
                save_checkpoint(
                    layout.train_checkpoints,
                    {
                        "fingerprint": fingerprint,
                        "step": done,
                        "bad_steps": bad_steps,
                        "model": model.state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict(),
                        "ranks": rng,
                        "config": config,
                        "best": best,
                        "history": history,
                        "val_curve": val_curve,
                    },
                )
    bar.close()
    if val_rows:
        final = validation_reward(compressor, val_rows, llm=llm, task=task, params=params)
        val_curve.append((p.steps, final))
        if live is not None:
            live.log_metric("reward/val", final)
            live.next_step()
        best = _better(best, p.steps, final, None, p.keep)
    if best is not None and best["step"] != p.steps:
        model.load_state_dict(best["model"])
        log.info("train: keeping step %d (reward/val %.4f)", best["step"], best["val"])
    record = {
        "config": config,
        "start_model": start or "embedded:all-MiniLM-L6-v2",
        "git_commit": git_commit(root),
        "data_versions": data_versions(root),
        "steps": p.steps,
        "resumed_from_step": first if state is not None else None,
        "bad_steps": bad_steps,
        "world_size": ranks.world,
        "seconds": round(time.perf_counter() - started, 2),
        "first_steps": _window(history, head=True),
        "last_steps": _window(history, head=False),
        "val_rewards": [[s, round(v, 5)] for s, v in val_curve],
        "kept_step": best["step"] if best is not None else p.steps,
        "fingerprint": fingerprint,
        "weights_sha256": weights_digest(model),
    }
    elapsed = max(time.perf_counter() - started, 1e-9)
    record["steps_per_s"] = round((p.steps - first) / elapsed, 4)
    record["samples_per_s"] = round(
        (p.steps - first) * p.prompts_per_step * p.samples_per_prompt / elapsed, 3
    )
    if device.type == "cuda":
        record["peak_gpu_memory_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 3)
    if ranks.main:
        save_model_atomic(compressor, layout.trained_model, record)
        if live is not None:
            live.end()
        log.info("train: model saved to %s", layout.trained_model)
    return record


def _better(
    best: dict[str, Any] | None, step: int, val: float, model: torch.nn.Module | None, keep: str
) -> dict[str, Any] | None:
    """``train.keep: best_val``: the best ``reward/val`` point so far (ties: the earlier),
    with a CPU copy of its weights (``model`` None: the final weights, which need none)."""
    if keep != "best_val" or not math.isfinite(val) or (best and val <= best["val"]):
        return best
    weights = (
        None
        if model is None
        else {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    )
    return {"step": step, "val": val, "model": weights}


def _gather_rng(generator: torch.Generator, ranks: Ranks) -> list[dict[str, Any]]:
    """Every rank's RNG states (rank 0 stores them all in the checkpoint)."""
    mine = {"rng": rng_state(), "generator": generator.get_state().cpu()}
    if ranks.world == 1:
        return [mine]
    gathered: list[Any] = [None] * ranks.world
    torch.distributed.all_gather_object(gathered, mine)
    return gathered


def _window(history: Sequence[dict[str, float]], head: bool, n: int = 10) -> dict[str, float]:
    """Mean of the first or last ``n`` steps' reward, rate and entropy (for the run record)."""
    part = history[:n] if head else history[-n:]
    out = {}
    for key in ("reward/mean", "compression/rate", "policy/entropy"):
        vals = [h[key] for h in part if math.isfinite(h.get(key, math.nan))]
        out[key] = round(sum(vals) / len(vals), 5) if vals else None
    return out  # type: ignore[return-value]


def run(params: Params, root: Path = Path("."), *, no_progress: bool = False) -> dict[str, Any]:
    """The ``train`` stage; returns steps, bad steps, seconds and the reward at both ends.

    With ``train.nproc_per_node`` > 1 (and not already under torchrun) it relaunches itself
    under torchrun with that many processes, on the same resolved params, and returns the
    record the ranks wrote; ``StageFailed`` when torchrun fails."""
    if params.train.nproc_per_node > 1 and not under_torchrun():
        record = _launch_ranks(params, root, no_progress=no_progress)
    else:
        record = train(params, root, progress=not no_progress)
    return {k: record[k] for k in ("steps", "bad_steps", "seconds", "first_steps", "last_steps")}


def _launch_ranks(params: Params, root: Path, *, no_progress: bool) -> dict[str, Any]:
    """``taco train`` under torchrun on a temporary copy of the resolved ``params``."""
    import yaml

    nproc = params.train.nproc_per_node
    fd, name = tempfile.mkstemp(prefix=".taco-train-params-", suffix=".yaml", dir=root)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            yaml.safe_dump(to_dict(params), fh, sort_keys=False, allow_unicode=True)
        args = ["train", "--params", name, *(["--no-progress"] if no_progress else [])]
        code = launch(nproc, args, root)
    finally:
        Path(name).unlink(missing_ok=True)
    if code != 0:
        raise StageFailed(
            f"train: torchrun with {nproc} processes exited with {code} (the ranks' errors "
            "are above)"
        )
    record = Layout.of(params, root).trained_model / RUN_RECORD
    return json.loads(record.read_text(encoding="utf-8"))
