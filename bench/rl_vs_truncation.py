"""Trained compressor vs its start, truncation and random dropping at the same token budget.

For each test row of ``<data_dir>/prepared/<task>/test.jsonl`` (with its teacher output from
``<data_dir>/teacher/<task>/test.jsonl``) every method keeps words up to ``--rate`` of the
context's tokens (the target LLM's; the encoder's with ``--budget-tokens encoder``), with the
same selection and text rebuilding for all. The target LLM then answers on the compressed
prompt; scores: teacher-output fidelity (BLEU, ROUGE-L, exp mean log-prob of the teacher
output) and the gold metric (BLEU for code, SQuAD F1 for QA). Differences to truncation come
with paired bootstrap 95% CIs. Where rows have a question, ``q_overlap`` is a retrieval
baseline: the ``--unit`` spans (default sentences) sharing the most words with the question.
The uncompressed prompt's gold score is printed last.

    .venv/bin/python bench/rl_vs_truncation.py --params params.x.yaml \
        --model start=data-x/models/warmstart --model trained=data-x/models/taco
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import re
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def bootstrap_ci(diff: np.ndarray, n: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95% percentile interval of the mean of paired differences."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(diff), size=(n, len(diff)))
    means = diff[idx].mean(1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def question_overlap(words: list[str], question: str) -> np.ndarray:
    """A retrieval baseline: 1 for context words (3+ letters) that occur in the question."""
    q = {w.lower() for w in re.findall(r"\w{3,}", question)}
    return np.array([float(w.lower() in q) for w in words])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", default=str(ROOT / "params.yaml"))
    ap.add_argument("--model", action="append", default=[], help="NAME=PATH, repeatable")
    ap.add_argument("--rate", type=float, default=0.5)
    ap.add_argument("--limit", type=int, default=None, help="first N test rows")
    ap.add_argument("--json", default=None, help="write the table here too")
    ap.add_argument(
        "--unit",
        choices=["word", "sentence", "line"],
        default=None,
        help="selection unit of the models (default: each model's own) and of the overlap baseline",
    )
    ap.add_argument(
        "--budget-tokens",
        choices=["llm", "encoder"],
        default="llm",
        help="units of every method's budget: the target LLM's tokens (as `taco train` counts "
        "by default) or the encoder's",
    )
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)

    from taco.compress.compressor import Compressor, ranking_scores
    from taco.compress.selection import word_scores
    from taco.config import load_params
    from taco.data.files import read_examples
    from taco.llm import build_llm
    from taco.rl.train import set_budget_units
    from taco.tasks.metrics import rouge_l, sentence_bleu
    from taco.tasks.registry import get_task

    params = load_params(args.params)
    data = Path(params.base.data_dir)
    task = get_task(params.base.task, params)
    examples = read_examples(data / "prepared" / params.base.task / "test.jsonl")[: args.limit]
    teacher = {}
    for line in (data / "teacher" / params.base.task / "test.jsonl").open(encoding="utf-8"):
        r = json.loads(line)
        teacher[r["id"]] = r["output"]
    examples = [e for e in examples if teacher.get(e.id)]
    llm = build_llm(params.llm)
    models = dict(m.split("=", 1) for m in args.model)
    base = Compressor.from_pretrained(next(iter(models.values()), None), device="cpu")
    set_budget_units(base, llm, args.budget_tokens)
    docs = [base.prepare(e.context, e.question) for e in examples]
    rng = np.random.default_rng(params.base.seed)
    unit = args.unit or "sentence"
    units = {"truncation": "word", "random": "word", "q_overlap": unit}
    scores: dict[str, list[np.ndarray]] = {
        "truncation": [-np.arange(d.al.n_words, dtype=float) for d in docs],
        "random": [rng.random(d.al.n_words) for d in docs],
    }
    if any(e.question for e in examples):
        scores["q_overlap"] = [
            ranking_scores(question_overlap(d.al.words(), e.question), d.al, unit)
            for d, e in zip(docs, examples, strict=True)
        ]
    for name, path in models.items():
        comp = Compressor.from_pretrained(path, device="cpu", unit=args.unit)
        units[name] = comp.unit
        probs = comp.token_probabilities(
            [e.context for e in examples], [e.question for e in examples]
        )
        scores[name] = [
            ranking_scores(word_scores(p, d.al), d.al, comp.unit, comp.position_prior)
            for p, d in zip(probs, docs, strict=True)
        ]
    ys = [teacher[e.id] for e in examples]
    results: dict[str, dict[str, np.ndarray]] = {}
    for name, per_doc in scores.items():
        texts = []
        for d, s in zip(docs, per_doc, strict=True):
            origin, costs = base.budget_costs(d)
            budget = math.floor(args.rate * origin + 1e-9)
            texts.append(base.fit_words(d, s, costs, budget, units[name])[1])  # inference's rule
        prompts = [task.prompt(t, e.question) for t, e in zip(texts, examples, strict=True)]
        outs = llm.generate(prompts, params.llm.max_new_tokens)
        lls = llm.loglik(prompts, ys) if hasattr(llm, "loglik") else [math.nan] * len(ys)
        hyp = [task.postprocess(o or "") for o in outs]
        refs = [[task.postprocess(y)] for y in ys]
        origin = np.array(llm.count_tokens([e.context for e in examples]), dtype=float)
        results[name] = {
            "teacher_bleu": np.array([sentence_bleu(h, r) for h, r in zip(hyp, refs, strict=True)]),
            "teacher_rougeL": np.array([rouge_l(h, r) for h, r in zip(hyp, refs, strict=True)]),
            "teacher_loglik": np.exp(np.array(lls, dtype=float)),
            "gold": np.array(
                [
                    task.score(o or "", list(e.references))
                    for o, e in zip(outs, examples, strict=True)
                ]
            ),
            "kept_llm_tokens": np.array(llm.count_tokens(texts), dtype=float)
            / np.maximum(origin, 1),
        }
    table = {}
    print(
        f"task={params.base.task} rows={len(examples)} rate={args.rate} "
        f"budget_tokens={args.budget_tokens}"
    )
    print(f"{'method':<12}" + "".join(f"{k:>26}" for k in results["truncation"]))
    for name, res in results.items():
        row = {}
        cells = []
        for k, v in res.items():
            entry = {"mean": float(np.nanmean(v))}
            if name != "truncation" and k != "kept_llm_tokens":
                lo, hi = bootstrap_ci(v - results["truncation"][k])
                entry["diff_vs_truncation_ci95"] = [lo, hi]
                cells.append(f"{entry['mean']:.3f} [{lo:+.3f},{hi:+.3f}]")
            else:
                cells.append(f"{entry['mean']:.3f}")
            row[k] = entry
        table[name] = row
        print(f"{name:<12}" + "".join(f"{c:>26}" for c in cells))
    if "start" in results:  # what RL added over its starting point
        for name in [m for m in models if m != "start"]:
            cells = []
            for k in ("teacher_bleu", "teacher_rougeL", "teacher_loglik", "gold"):
                d = results[name][k] - results["start"][k]
                lo, hi = bootstrap_ci(d)
                table[name][k]["diff_vs_start_ci95"] = [lo, hi]
                cells.append(f"{k} {np.nanmean(d):+.3f} [{lo:+.3f},{hi:+.3f}]")
            print(f"{name} - start: " + "  ".join(cells))
    full = np.array([task.score(y, list(e.references)) for y, e in zip(ys, examples, strict=True)])
    table["uncompressed"] = {"gold": {"mean": float(full.mean())}}
    print(f"uncompressed prompt (the teacher outputs): gold {full.mean():.3f}")
    if args.json:
        Path(args.json).write_text(json.dumps(table, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
