"""Trained compressor vs truncation and every other baseline at the same token budget.

A thin caller of the `evaluate` stage (taco/eval/evaluate.py owns the comparison: budgets in
the target LLM's tokens, paired bootstrap CIs, the question-overlap retrieval baseline, the
scoring loop). It evaluates the project of ``--params`` at ``--rate`` (repeatable) on the
first ``--limit`` test rows and prints the comparison table; ``--json`` writes the flat metrics
too. The stage's own outputs in ``<data_dir>/reports/eval/`` are rewritten.

    PYTHONPATH=. .venv/bin/python bench/rl_vs_truncation.py --params params.x.yaml --rate 0.5
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", default=str(ROOT / "params.yaml"))
    ap.add_argument("--rate", type=float, action="append", default=None, help="repeatable")
    ap.add_argument("--limit", type=int, default=None, help="first N test rows (default: params)")
    ap.add_argument("--json", default=None, help="copy the flat metrics here too")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)

    from taco.config import load_params
    from taco.eval import evaluate, report
    from taco.eval.gate import gated_metric
    from taco.layout import Layout

    params = load_params(args.params)
    ev = dataclasses.replace(
        params.evaluate,
        rates=tuple(args.rate) if args.rate else params.evaluate.rates,
        max_rows=args.limit or params.evaluate.max_rows,
    )
    ev.validate()
    params = dataclasses.replace(params, evaluate=ev)
    evaluate.evaluate(params, Path.cwd(), progress=True)
    layout = Layout.of(params, Path.cwd())
    metrics = json.loads(layout.eval_metrics.read_text())
    metric = gated_metric(params.base.task, params.gate)
    print(report.comparison_table(metrics, params.base.task, metric, ev.confidence))
    if args.json:
        shutil.copy(layout.eval_metrics, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
