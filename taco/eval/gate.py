"""The `gate` stage: does the trained compressor ship? ``decide`` (pure) reads the
evaluation's flat metrics and the thresholds of params.yaml's ``gate`` section.

Checks, at every gated rate (``gate.rates``, default ``evaluate.rates``), on the gated score
(``gate.metric``; by default the score of what training optimised, on held-out rows: the
teacher output's log-likelihood for ``reward.name: loglik``, BLEU against the teacher output
for ``taco_rl``, the task's metric against the gold references for ``gold``):

- ``min_score``: trained's score is at least ``gate.min_score`` (when set);
- ``gain_vs_start``: trained's relative gain over the model training started from;
- ``gain_vs_best``: ... over the best other compressor (every baseline but the ceiling
  ``uncompressed``, ``start`` and the champion, which have their own checks);
  with ``gate.require_ci`` both gains also need the paired CI's lower bound above zero;
- ``rate_deviation``: |achieved − requested| rate of trained, in target-LLM tokens;
- ``latency``: trained's compression latency per 1,000 context tokens;
- ``champion`` (champion/challenger): when a champion exists, trained's relative gain over
  it on the same test rows (paired) is at least ``gate.min_gain_vs_champion``.

``taco gate`` writes ``<data_dir>/reports/gate.json`` and exits 0 whether the gate passes or
not (a "no" is a normal outcome the DAG reads); errors (no metrics, metrics of another task,
a missing champion) exit 2.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from taco.config import GateParams, Params
from taco.data.files import DataFileError, read_json, write_atomic
from taco.errors import UserError
from taco.eval import keys
from taco.eval.keys import MetricsError
from taco.eval.stats import relative_gain
from taco.layout import Layout

log = logging.getLogger(__name__)

#: compressors that are not "the best other compressor" of ``gain_vs_best``
NOT_BASELINES = ("trained", "uncompressed", "start", "production")
#: the task's own metric against the gold references
TASK_METRICS = {"qa": "f1", "summarization": "bleu", "code": "bleu"}
#: the gated metric when ``gate.metric`` is null: what the reward trained for (``gold``:
#: the task's metric)
REWARD_METRICS = {"loglik": "teacher_loglik", "taco_rl": "teacher_bleu"}


@dataclasses.dataclass(frozen=True)
class Check:
    """One gate check: its ``value`` against ``threshold``; ``reason`` says why it failed."""

    name: str
    passed: bool
    value: float | None
    threshold: float
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "passed": self.passed,
            "value": _finite(self.value),
            "threshold": self.threshold,
            "reason": self.reason,
        }


@dataclasses.dataclass(frozen=True)
class Decision:
    """The gate's answer: passed iff every check passed."""

    task: str
    metric: str
    checks: tuple[Check, ...]
    recommended_rate: float | None
    champion: str | None

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def reasons(self) -> list[str]:
        return [c.reason for c in self.checks if not c.passed]


def _finite(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else round(float(x), 6)


def _pct(x: float) -> str:
    return f"{x:+.1%}" if math.isfinite(x) else ("+inf" if x > 0 else "-inf")


def gated_metric(task: str, thresholds: GateParams, reward: str | None = None) -> str:
    """``gate.metric``; else the metric of what ``reward`` (``reward.name``) trained for
    (``REWARD_METRICS``); else the task's own metric (f1 for QA, BLEU otherwise)."""
    if thresholds.metric:
        return thresholds.metric
    return REWARD_METRICS.get(reward or "", TASK_METRICS.get(task, "bleu"))


def _gain_check(
    metrics: Mapping[str, Any],
    task: str,
    rate: float,
    metric: str,
    other: str,
    name: str,
    threshold: float,
    require_ci: bool,
    label: str,
) -> Check:
    mine = keys.value(metrics, keys.key(task, rate, "trained", metric))
    theirs = keys.value(metrics, keys.key(task, rate, other, metric))
    low = keys.value(metrics, keys.ci_key(task, rate, other, metric, "ci_low"))
    gain = relative_gain(mine, theirs)
    ok = gain >= threshold and (not require_ci or low > 0)
    reason = ""
    if not ok:
        reason = (
            f"At rate {rate:g} the trained compressor's {metric} ({mine:.4f}) is {_pct(gain)} "
            f"vs {label} {other} ({theirs:.4f}); the gate needs at least {_pct(threshold)}"
        )
        if require_ci and not low > 0:
            reason += f" and a CI lower bound above 0 (it is {low:+.4f})"
        reason += "."
    return Check(f"{name}@{rate:g}", ok, gain, threshold, reason)


def decide(
    metrics: Mapping[str, Any],
    thresholds: GateParams,
    champion: str | None,
    *,
    task: str | None = None,
    reward: str | None = None,
) -> Decision:
    """The gate decision from flat evaluation ``metrics`` (see taco/eval/keys.py).

    ``champion`` names the model to beat (its rows are the ``production`` compressor of the
    metrics) or is None. ``task`` defaults to the only task in the metrics; ``reward``
    (``reward.name``) chooses the gated metric when ``gate.metric`` is null. Raises
    ``MetricsError`` when the metrics are of another task or lack what a check needs.
    """
    if task is None:
        found = keys.tasks_of(metrics)
        if len(found) != 1:
            raise MetricsError(f"metrics hold {len(found)} tasks; name the one to gate")
        task = next(iter(found))
    keys.check_task(metrics, task, "gate")
    metric = gated_metric(task, thresholds, reward)
    evaluated = keys.rates_of(metrics, task)
    rates = list(thresholds.rates) if thresholds.rates is not None else evaluated
    checks: list[Check] = []
    for rate in rates:
        if rate not in evaluated:
            raise MetricsError(
                f"gate.rates: rate {rate:g} was not evaluated (evaluated: "
                f"{', '.join(f'{r:g}' for r in evaluated)})"
            )
        names = keys.compressors_of(metrics, task, rate)
        score = keys.value(metrics, keys.key(task, rate, "trained", metric))
        if not math.isfinite(score):
            raise MetricsError(f"metrics: no trained {metric} at rate {rate:g} (gate.metric?)")
        floor = thresholds.min_score
        if floor is not None:
            ok = score >= floor
            reason = (
                f"At rate {rate:g} the trained compressor's {metric} is {score:.4f}, below "
                f"the minimum {floor:g}."
            )
            checks.append(Check(f"min_score@{rate:g}", ok, score, floor, "" if ok else reason))
        common = (metrics, task, rate, metric)
        if "start" in names:
            checks.append(
                _gain_check(
                    *common,
                    "start",
                    "gain_vs_start",
                    thresholds.min_gain_vs_start,
                    thresholds.require_ci,
                    "its start model",
                )
            )
        others = [n for n in names if n not in NOT_BASELINES]
        if others:
            best = max(others, key=lambda n: keys.value(metrics, keys.key(task, rate, n, metric)))
            checks.append(
                _gain_check(
                    *common,
                    best,
                    "gain_vs_best",
                    thresholds.min_gain_vs_best,
                    thresholds.require_ci,
                    "the best other compressor,",
                )
            )
        achieved = keys.value(metrics, keys.key(task, rate, "trained", "achieved_rate"))
        dev = abs(achieved - rate)
        ok = dev <= thresholds.max_rate_deviation
        checks.append(
            Check(
                f"rate_deviation@{rate:g}",
                ok,
                dev,
                thresholds.max_rate_deviation,
                ""
                if ok
                else f"At rate {rate:g} the trained compressor kept {achieved:.3f} of the tokens, "
                f"{dev:.3f} off the requested rate (at most {thresholds.max_rate_deviation:g}).",
            )
        )
        ms = keys.value(metrics, keys.key(task, rate, "trained", "latency_ms_per_1k_tokens"))
        ok = ms <= thresholds.max_latency_ms_per_1k_tokens
        checks.append(
            Check(
                f"latency@{rate:g}",
                ok,
                ms,
                thresholds.max_latency_ms_per_1k_tokens,
                ""
                if ok
                else f"At rate {rate:g} compression took {ms:.0f} ms per 1,000 tokens "
                f"(at most {thresholds.max_latency_ms_per_1k_tokens:g}).",
            )
        )
        if champion is not None:
            if "production" not in names:
                raise MetricsError(
                    f"gate.champion is {champion} but the metrics have no production rows at "
                    f"rate {rate:g} (rerun `taco evaluate`)"
                )
            checks.append(
                _gain_check(
                    *common,
                    "production",
                    "champion",
                    thresholds.min_gain_vs_champion,
                    False,
                    "the champion",
                )
            )
    rec = metrics.get(keys.recommended_key(task))
    return Decision(task, metric, tuple(checks), rec, champion)


def resolve_champion(params: Params, root: Path = Path(".")) -> Path | None:
    """The champion's compressor folder: ``gate.champion`` null → None; a folder → it
    (relative to ``root``); ``production`` → the production-labelled model of ``base.task``
    in the BentoML store (taco/serving/registry.py, the packaging issue)."""
    champion = params.gate.champion
    if champion is None:
        return None
    if champion == "production":
        from taco.serving.registry import production_model_path

        found = production_model_path(params.base.task)
        if found is None:
            log.info("gate.champion: production — no production model of %s yet", params.base.task)
        return found
    path = Path(champion)
    path = path if path.is_absolute() else Path(root) / path
    if not (path / "config.json").is_file():
        raise UserError(f"gate.champion: {path} is not a compressor folder (no config.json)")
    return path


def write_decision(path: Path, decision: Decision, model: Path) -> dict[str, Any]:
    """gate.json: task, passed, every check, one sentence per failed check, the recommended
    rate, the candidate model folder and the champion."""
    record = {
        "task": decision.task,
        "passed": decision.passed,
        "metric": decision.metric,
        "checks": [c.to_dict() for c in decision.checks],
        "reasons": decision.reasons,
        "recommended_rate": decision.recommended_rate,
        "model": str(model),
        "champion": decision.champion,
    }
    write_atomic(path, json.dumps(record, indent=2) + "\n")
    return record


def run(params: Params, root: Path = Path(".")) -> dict[str, Any]:
    """The ``gate`` stage: decide from ``eval/metrics.json``, write ``gate.json``; returns
    passed and the reasons (exit 0 either way)."""
    layout = Layout.of(params, root)
    path = layout.eval_metrics
    if not path.is_file():
        raise DataFileError(f"evaluation metrics not found: {path} (run `taco evaluate`)")
    metrics = read_json(path)
    if not isinstance(metrics, dict):
        raise MetricsError(f"{path}: expected a JSON object of metrics")
    keys.check_task(metrics, params.base.task, str(path))
    thresholds = params.gate
    if thresholds.rates is None:
        thresholds = dataclasses.replace(thresholds, rates=params.evaluate.rates)
    champ = resolve_champion(params, root)
    decision = decide(
        metrics,
        thresholds,
        None if champ is None else str(champ),
        task=params.base.task,
        reward=params.reward.name,
    )
    try:
        model = layout.trained_model.relative_to(root)
    except ValueError:
        model = layout.trained_model
    record = write_decision(layout.gate_report, decision, model)
    verdict = "PASSED" if decision.passed else "FAILED"
    log.info(
        "gate %s (%d checks)%s",
        verdict,
        len(decision.checks),
        "".join(f"\n  - {r}" for r in decision.reasons),
    )
    return {"passed": record["passed"], "reasons": record["reasons"]}
