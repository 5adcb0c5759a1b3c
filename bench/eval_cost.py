"""What `taco evaluate` costs: a cold LLM cache, a rerun, and a rerun after retraining.

    PYTHONPATH=. .venv/bin/python bench/eval_cost.py [--params params.yaml] [--dtype float32]

Copies the evaluation's inputs of a finished pipeline (test split, teacher outputs, trained
and warm-start models) into a temporary data folder with an empty LLM cache, forces the LLM's
precision (``--dtype``, default float32: the path of CPUs without native bf16), then runs the
real stage three times: **cold** (empty cache), **warm** (nothing changed) and **retrained**
(the trained model's head perturbed, as a retrain changes it: only ``trained`` is new). For each
it prints wall seconds, process CPU seconds (on a shared machine wall time inflates with the
load; CPU seconds much less), LLM calls, cache hits and the 1-minute load average, then the
95% CI half-widths of trained − truncate that the chosen test split buys.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def cpu_seconds() -> float:
    """User + system CPU seconds of this process and its finished children."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def perturb_head(folder: Path, scale: float, seed: int) -> None:
    """Add seeded Gaussian noise to the keep/drop head of the compressor in ``folder``."""
    import torch
    from safetensors.torch import load_file, save_file

    path = folder / "model.safetensors"
    weights = load_file(str(path))
    gen = torch.Generator().manual_seed(seed)
    for name, t in weights.items():
        if name.startswith("classifier."):
            weights[name] = t + scale * torch.randn(t.shape, generator=gen, dtype=t.dtype)
    save_file(weights, str(path), metadata={"format": "pt"})


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "auto"])
    ap.add_argument("--rows", type=int, default=None, help="evaluate.max_rows (default: params)")
    ap.add_argument("--noise", type=float, default=0.5, help="head perturbation of the retrain")
    ap.add_argument(
        "--model",
        default=None,
        help="compressor folder evaluated as trained (default: the "
        "project's data/models/taco); without a taco_run.json its start is the embedded encoder",
    )
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = ap.parse_args()

    from taco.config import load_params
    from taco.eval import evaluate, keys
    from taco.layout import Layout

    params = load_params(args.params)
    src = Layout.of(params, Path.cwd())
    tmp = Path(tempfile.mkdtemp(prefix="taco-evalcost-"))
    data = tmp / "data"
    params = dataclasses.replace(
        params,
        base=dataclasses.replace(params.base, data_dir=data),
        llm=dataclasses.replace(params.llm, dtype=args.dtype, cache_path=tmp / "llm-cache.sqlite"),
        evaluate=dataclasses.replace(
            params.evaluate, max_rows=args.rows or params.evaluate.max_rows
        ),
    )
    dst = Layout.of(params, tmp)
    dst.split("test").parent.mkdir(parents=True)
    shutil.copy(src.split("test"), dst.split("test"))
    shutil.copytree(src.teacher_dir, dst.teacher_dir)
    shutil.copytree(args.model or src.trained_model, dst.trained_model)
    record = dst.trained_model / "taco_run.json"
    if not record.is_file():
        record.write_text(json.dumps({"start_model": "embedded:all-MiniLM-L6-v2"}))
    if src.warmstart_model.is_dir():
        shutil.copytree(src.warmstart_model, dst.warmstart_model)
    # the start model's record may point into the source project: keep it resolvable there
    print(
        f"# taco evaluate cost — task {params.base.task}, llm.dtype {args.dtype}, "
        f"{params.evaluate.max_rows} rows, rates {list(params.evaluate.all_rates())}, "
        f"{os.cpu_count()} CPUs"
    )
    head = ("run", "wall s", "CPU s", "LLM calls", "cache hits", "load1")
    print(
        f"{head[0]:<10} "
        + " ".join(f"{h:>{w}}" for h, w in zip(head[1:], (8, 8, 10, 11, 6), strict=True))
    )
    metrics = {}
    for run in ("cold", "warm", "retrained"):
        if run == "retrained":
            perturb_head(dst.trained_model, args.noise, seed=1)
        load = os.getloadavg()[0]
        t0, c0 = time.perf_counter(), cpu_seconds()
        summary = evaluate.evaluate(params, Path.cwd(), progress=False)
        wall, cpu = time.perf_counter() - t0, cpu_seconds() - c0
        llm = summary["llm"]
        print(
            f"{run:<10} {wall:>8.1f} {cpu:>8.1f} {llm.get('llm/calls', 0):>10.0f} "
            f"{llm.get('llm/cache_hits', 0):>11.0f} {max(load, os.getloadavg()[0]):>6.1f}"
        )
        metrics = json.loads(dst.eval_metrics.read_text())
        by = summary["seconds_by_compressor"]
        print(
            f"{'':<10} per compressor (wall s): " + ", ".join(f"{k} {v:.0f}" for k, v in by.items())
        )
    task = params.base.task
    print("\n95% CI half-widths of trained - truncate (the last run):")
    for rate in params.evaluate.all_rates():
        cells = []
        for m in ("bleu", "f1", "teacher_bleu", "teacher_loglik"):
            low = metrics.get(keys.ci_key(task, rate, "truncate", m, "ci_low"))
            high = metrics.get(keys.ci_key(task, rate, "truncate", m, "ci_high"))
            if low is not None:
                cells.append(f"{m} ±{(high - low) / 2:.3f}")
        print(f"  rate {rate:g}: " + ", ".join(cells))
    if args.keep:
        print(f"kept {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
