"""Reward-call throughput of the embedded local LLM on every precision path, and how far the
fast paths' outputs and rewards agree with float32's.

For each task (QA, code, meeting summary from ../shared/data) it builds reward-shaped prompts —
the task template around a *compressed* context (here: its first half of words, the truncation
baseline; meeting transcripts are first cut to --context-words words). Every path in
--dtypes (float32, bfloat16, int8: torch's dynamic quantization of the linear layers) is
loaded once, and the paths run interleaved on the same prompts:

- teacher pass: greedy decoding of the *full* prompts at batch 8 (what `taco teacher` does):
  samples/s, and vs float32 the share of identical outputs and the corpus BLEU between them;
- ``generate``: greedy decoding of --max-new-tokens tokens on the compressed prompts (the
  ``taco_rl`` reward) and ``loglik``: log-likelihood of float32's teacher output (the
  ``loglik`` reward), at each batch size;
- the loglik reward of every compressed prompt vs float32's: Pearson and Spearman correlation,
  mean absolute difference;
- finally the ``auto`` path through the SQLite cache, cold then warm.

    .venv/bin/python bench/reward_throughput.py               # ~10-20 min on 2 CPU cores
    .venv/bin/python bench/reward_throughput.py --samples 8 --batch-sizes 8   # quicker
    .venv/bin/python bench/reward_throughput.py --slow-kind   # as a CPU without AVX-512/VNNI/bf16
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from cpu_kind import describe, parse_args

from taco.config import load_params
from taco.llm.base import CachedLLM
from taco.llm.cache import LLMCache
from taco.llm.local import LocalLLM
from taco.tasks.metrics import corpus_bleu
from taco.tasks.registry import get_task

ROOT = Path(__file__).resolve().parents[1]
T = TypeVar("T")
DATA = ROOT.parent / "shared" / "data"
SHORT = {"float32": "fp32", "bfloat16": "bf16", "int8": "int8", "float16": "fp16"}


def load_rows(task: str, n: int, context_words: int) -> list[tuple[str, str]]:
    """(context, question) pairs from ../shared/data/<task>/dev.jsonl, one per distinct context."""
    rows, seen = [], set()
    with (DATA / task / "dev.jsonl").open(encoding="utf-8") as fh:
        for line in fh:
            raw = json.loads(line)
            context = raw["context"]
            if context in seen:
                continue
            seen.add(context)
            words = context.split(" ")
            if len(words) > context_words:
                context = " ".join(words[:context_words])
            rows.append((context, raw.get("question", "")))
            if len(rows) == n:
                break
    return rows


def half(context: str) -> str:
    """A stand-in compressed context: the first half of the words (keeps newlines)."""
    words = context.split(" ")
    return " ".join(words[: max(1, len(words) // 2)])


def timed(fn: Callable[..., T], *args: Any, **kwargs: Any) -> tuple[T, float]:
    """(fn's result, seconds it took)."""
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def ranks(x: np.ndarray) -> np.ndarray:
    return np.argsort(np.argsort(x, kind="stable"), kind="stable").astype(float)


def correlations(a: list[float], b: list[float]) -> tuple[float, float, float]:
    """(Pearson, Spearman, mean |a - b|)."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    pearson = float(np.corrcoef(x, y)[0, 1])
    spearman = float(np.corrcoef(ranks(x), ranks(y))[0, 1])
    return pearson, spearman, float(np.mean(np.abs(x - y)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=16, help="prompts per task")
    parser.add_argument("--batch-sizes", default="1,8")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--context-words", type=int, default=400)
    parser.add_argument("--dtypes", default="float32,bfloat16,int8", help="paths to time")
    parser.add_argument("--tasks", default="qa,code,summarization")
    parser.add_argument("--repeats", type=int, default=1, help="median of N timings per cell")
    parser.add_argument("--no-cache-check", action="store_true", help="skip the cache section")
    args = parse_args(parser)
    if not DATA.is_dir():
        print(f"shared data not found: {DATA}")
        return 1
    params = load_params(ROOT / "params.yaml")
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    tasks = args.tasks.split(",")
    paths = ["float32", *[d for d in args.dtypes.split(",") if d and d != "float32"]]

    llms: dict[str, LocalLLM] = {}
    for path in paths:
        llms[path], load_s = timed(LocalLLM.from_source, None, device="cpu", dtype=path)
        llms[path].generate(["warm-up"], max_new_tokens=2)
        print(f"# loaded {path}: {llms[path].identity} in {load_s:.2f} s")
    auto = LocalLLM.from_source(None, device="cpu", dtype="auto")
    print(f"# reward throughput: {auto.model_id}, max_new_tokens {args.max_new_tokens}")
    print("\n".join(describe(f"llm.dtype auto = {auto.precision} here")))

    full: dict[str, list[str]] = {}
    prompts: dict[str, list[str]] = {}
    for task in tasks:
        spec = get_task(task, params)
        rows = load_rows(task, args.samples, args.context_words)
        full[task] = [spec.prompt(c, q) for c, q in rows]
        prompts[task] = [spec.prompt(half(c), q) for c, q in rows]
    f32 = llms["float32"]
    print(
        "# prompts per task: "
        + ", ".join(
            f"{t} {len(full[t])} (full ≈ {np.mean(f32.count_tokens(full[t])):.0f} tokens, "
            f"compressed ≈ {np.mean(f32.count_tokens(prompts[t])):.0f})"
            for t in tasks
        )
    )

    # teacher pass: every path on the full prompts, interleaved; outputs vs float32's
    teacher: dict[str, dict[str, list[str]]] = {p: {} for p in paths}
    secs: dict[str, dict[str, list[float]]] = {p: {t: [] for t in tasks} for p in paths}
    for task in tasks:
        for _ in range(args.repeats):
            for path, llm in llms.items():
                llm.batch_size = 8
                outs, s = timed(llm.generate, full[task], args.max_new_tokens)
                teacher[path][task] = [o or "" for o in outs]
                secs[path][task].append(s)
    print()
    print(
        "| task | path | teacher pass samples/s (batch 8) | × fp32 | outputs = fp32 "
        "| BLEU vs fp32 |"
    )
    print("|---|---|---:|---:|---:|---:|")
    for task in ("all", *tasks):
        ts = tasks if task == "all" else [task]
        n = sum(len(full[t]) for t in ts)
        base = sum(statistics.median(secs["float32"][t]) for t in ts)
        for path in paths:
            s = sum(statistics.median(secs[path][t]) for t in ts)
            ref = [o for t in ts for o in teacher["float32"][t]]
            out = [o for t in ts for o in teacher[path][t]]
            same = np.mean([a == b for a, b in zip(out, ref, strict=True)])
            bleu = corpus_bleu(out, [[r] for r in ref])
            print(
                f"| {task} | {SHORT[path]} | {n / s:.2f} | {base / s:.2f}× | {same:.1%} "
                f"| {100 * bleu:.1f} |"
            )

    # reward calls on the compressed prompts, every path interleaved
    print()
    print("| task | batch | path | generate samples/s | × fp32 | loglik samples/s | × fp32 |")
    print("|---|---:|---|---:|---:|---:|---:|")
    rewards: dict[str, dict[str, list[float]]] = {p: {} for p in paths}
    for task in tasks:
        n = len(prompts[task])
        ref_out = teacher["float32"][task]
        for bs in batch_sizes:
            gen: dict[str, list[float]] = {p: [] for p in paths}
            ll: dict[str, list[float]] = {p: [] for p in paths}
            for _ in range(args.repeats):
                for path, llm in llms.items():
                    llm.batch_size = bs
                    gen[path].append(timed(llm.generate, prompts[task], args.max_new_tokens)[1])
                    rewards[path][task], s = timed(llm.loglik, prompts[task], ref_out)
                    ll[path].append(s)
            g32, l32 = statistics.median(gen["float32"]), statistics.median(ll["float32"])
            for path in paths:
                g, lsec = statistics.median(gen[path]), statistics.median(ll[path])
                print(
                    f"| {task} | {bs} | {SHORT[path]} | {n / g:.2f} | {g32 / g:.2f}× "
                    f"| {n / lsec:.2f} | {l32 / lsec:.2f}× |"
                )

    print()
    print("| path | loglik reward vs fp32: Pearson | Spearman | mean abs. difference (nats/tok) |")
    print("|---|---:|---:|---:|")
    for path in paths[1:]:
        ours, ref = ([r for t in tasks for r in rewards[x][t]] for x in (path, "float32"))
        p, s, d = correlations(ours, ref)
        print(f"| {SHORT[path]} | {p:.4f} | {s:.4f} | {d:.4f} |")

    if not args.no_cache_check:
        print()
        label = f"cache (auto = {auto.precision}, all tasks, batch 8)"
        print(f"| {label} | generate samples/s | loglik samples/s |")
        print("|---|---:|---:|")
        auto.batch_size = 8
        all_prompts = [p for t in tasks for p in prompts[t]]
        all_teacher = [y for t in tasks for y in teacher["float32"][t]]
        with tempfile.TemporaryDirectory() as tmp:
            cached = CachedLLM(auto, LLMCache(Path(tmp) / "bench.sqlite"))
            for label in ("cold (miss + store)", "warm (hit)"):
                _, gen_s = timed(cached.generate, all_prompts, args.max_new_tokens)
                _, ll_s = timed(cached.loglik, all_prompts, all_teacher)
                n = len(all_prompts)
                print(f"| {label} | {n / gen_s:.1f} | {n / ll_s:.1f} |")
            print(f"\n# cache counters: {cached.metrics()}")
    print("\n".join(line for line in describe() if "load average" in line))
    return 0


if __name__ == "__main__":
    sys.exit(main())
