"""Reward-call throughput of the embedded local LLM: generation vs loglik, batch sizes, warm cache.

For each task (QA, code, meeting summary from ../shared/data) it builds reward-shaped prompts —
the task template around a *compressed* context (here: its first half of words, the truncation
baseline; meeting transcripts are first cut to --context-words words) — gets teacher outputs
from the uncompressed prompts once, then times:

- ``generate``: greedy decoding of --max-new-tokens tokens (what ``taco_rl`` needs),
- ``loglik``: log-likelihood of the teacher output (what the ``loglik`` reward needs),

at each batch size, and finally both again through the SQLite cache, cold then warm.

    .venv/bin/python bench/reward_throughput.py               # ~5-10 min on 2 CPU cores
    .venv/bin/python bench/reward_throughput.py --samples 8 --batch-sizes 1,8   # quicker
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from taco.config import load_params
from taco.llm.base import CachedLLM
from taco.llm.cache import LLMCache
from taco.llm.local import LocalLLM
from taco.tasks.registry import get_task

ROOT = Path(__file__).resolve().parents[1]
T = TypeVar("T")
DATA = ROOT.parent / "shared" / "data"


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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=16, help="prompts per task")
    parser.add_argument("--batch-sizes", default="1,4,8,16")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--context-words", type=int, default=400)
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--tasks", default="qa,code,summarization")
    parser.add_argument("--repeats", type=int, default=1, help="best of N timings per cell")
    args = parser.parse_args()
    if not DATA.is_dir():
        print(f"shared data not found: {DATA}")
        return 1
    params = load_params(ROOT / "params.yaml")
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    tasks = args.tasks.split(",")

    llm, load_s = timed(LocalLLM.from_source, None, dtype=args.dtype)
    print(
        f"# reward throughput: {llm.model_id}, {llm.model.dtype}, {llm.device}, "
        f"{platform.processor() or platform.machine()}, torch threads "
        f"{__import__('torch').get_num_threads()}; load {load_s:.2f} s"
    )
    llm.generate(["warm-up"], max_new_tokens=2)
    print(f"# load average (1/5/15 min) at the start: {os.getloadavg()}")

    prompts: dict[str, list[str]] = {}
    teacher: dict[str, list[str]] = {}
    for task in tasks:
        spec = get_task(task, params)
        rows = load_rows(task, args.samples, args.context_words)
        full = [spec.prompt(c, q) for c, q in rows]
        llm.batch_size = 8
        outs, secs = timed(llm.generate, full, args.max_new_tokens)
        teacher[task] = [o or "" for o in outs]
        prompts[task] = [spec.prompt(half(c), q) for c, q in rows]
        n_tok = sum(llm.count_tokens(prompts[task])) / len(rows)
        print(
            f"# {task}: {len(rows)} prompts, compressed prompt ≈ {n_tok:.0f} tokens; "
            f"teacher pass (full prompts, batch 8) {len(rows) / secs:.2f} samples/s"
        )

    print()
    print("| task | batch | generate samples/s | loglik samples/s | loglik speed-up |")
    print("|---|---:|---:|---:|---:|")
    for task in tasks:
        n = len(prompts[task])
        for bs in batch_sizes:
            llm.batch_size = bs
            gen_s = min(
                timed(llm.generate, prompts[task], args.max_new_tokens)[1]
                for _ in range(args.repeats)
            )
            ll_s = min(
                timed(llm.loglik, prompts[task], teacher[task])[1] for _ in range(args.repeats)
            )
            print(f"| {task} | {bs} | {n / gen_s:.2f} | {n / ll_s:.2f} | {gen_s / ll_s:.1f}x |")

    print()
    print("| cache (all tasks, batch 8) | generate samples/s | loglik samples/s |")
    print("|---|---:|---:|")
    llm.batch_size = 8
    all_prompts = [p for t in tasks for p in prompts[t]]
    all_teacher = [y for t in tasks for y in teacher[t]]
    with tempfile.TemporaryDirectory() as tmp:
        cached = CachedLLM(llm, LLMCache(Path(tmp) / "bench.sqlite"))
        for label in ("cold (miss + store)", "warm (hit)"):
            _, gen_s = timed(cached.generate, all_prompts, args.max_new_tokens)
            _, ll_s = timed(cached.loglik, all_prompts, all_teacher)
            n = len(all_prompts)
            print(f"| {label} | {n / gen_s:.1f} | {n / ll_s:.1f} |")
        print(f"\n# cache counters: {cached.metrics()}")
    print(f"# load average (1/5/15 min) at the end: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
