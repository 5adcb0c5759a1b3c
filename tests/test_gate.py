"""taco.eval.gate.decide: table-driven cases (each check failing alone; champion better,
worse, absent) and the errors of bad metrics."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from taco.config import GateParams
from taco.eval import keys
from taco.eval.gate import decide

RATES = (0.33, 0.5)
SCORES = {"trained": 0.30, "start": 0.25, "truncate": 0.28, "random": 0.10, "uncompressed": 0.40}


def metrics(task: str = "code", champion: float | None = None, **edits: Any) -> dict[str, Any]:
    """Evaluation metrics that pass every default check; ``edits`` override keys
    (``"<rate>/<compressor>/<metric>"`` or ``"<rate>/<other>/ci_low"``)."""
    scores = dict(SCORES, **({"production": champion} if champion is not None else {}))
    m: dict[str, Any] = {}
    for r in RATES:
        for c, s in scores.items():
            m[keys.key(task, r, c, "bleu")] = s
            m[keys.key(task, r, c, "achieved_rate")] = r - 0.01 if c != "uncompressed" else 1.0
            m[keys.key(task, r, c, "latency_ms_per_1k_tokens")] = 50.0
    for spec, v in edits.items():
        rate, c, metric = spec.split("/")
        m[keys.key(task, float(rate), c, metric)] = v
    for r in RATES:  # the comparisons follow the (edited) means
        for c in scores:
            if c != "trained":
                d = m[keys.key(task, r, "trained", "bleu")] - m[keys.key(task, r, c, "bleu")]
                for part, v in zip(keys.CI_PARTS, (d, d - 0.01, d + 0.01), strict=True):
                    m[keys.ci_key(task, r, c, "bleu", part)] = v
    m[keys.recommended_key(task)] = 0.5
    return m


def failing(decision: Any) -> set[str]:
    return {c.name for c in decision.checks if not c.passed}


@pytest.mark.parametrize(
    ("edits", "thresholds", "expected"),
    [
        ({}, {}, set()),
        ({}, {"min_score": 0.35}, {"min_score@0.33", "min_score@0.5"}),
        ({"0.33/start/bleu": 0.31}, {}, {"gain_vs_start@0.33"}),
        ({"0.5/truncate/bleu": 0.32}, {}, {"gain_vs_best@0.5"}),
        ({}, {"min_gain_vs_best": 0.1}, {"gain_vs_best@0.33", "gain_vs_best@0.5"}),
        ({"0.33/trained/achieved_rate": 0.2}, {}, {"rate_deviation@0.33"}),
        ({"0.5/trained/latency_ms_per_1k_tokens": 50000.0}, {}, {"latency@0.5"}),
        ({}, {"rates": (0.5,), "min_score": 0.35}, {"min_score@0.5"}),
    ],
    ids=["pass", "min_score", "start", "best", "min_gain", "rate", "latency", "rates"],
)
def test_each_check_fails_alone(edits: dict, thresholds: dict, expected: set[str]) -> None:
    decision = decide(metrics(**edits), GateParams(**thresholds), None)
    assert failing(decision) == expected
    assert decision.passed is (not expected)
    assert len(decision.reasons) == len(expected)
    assert decision.recommended_rate == 0.5 and decision.task == "code"


def test_require_ci_fails_a_gain_whose_interval_includes_zero() -> None:
    m = metrics()
    m[keys.ci_key("code", 0.5, "truncate", "bleu", "ci_low")] = -0.003  # gain +0.02, CI spans 0
    assert not failing(decide(m, GateParams(), None))
    decision = decide(m, GateParams(require_ci=True), None)
    assert failing(decision) == {"gain_vs_best@0.5"}
    assert "CI lower bound above 0 (it is -0.0030)" in decision.reasons[0]


def test_a_reason_is_one_human_sentence_with_the_numbers() -> None:
    decision = decide(metrics(**{"0.5/truncate/bleu": 0.32}), GateParams(), None)
    (reason,) = decision.reasons
    assert reason == (
        "At rate 0.5 the trained compressor's bleu (0.3000) is -6.3% vs the best other "
        "compressor, truncate (0.3200); the gate needs at least +0.0%."
    )


@pytest.mark.parametrize(
    ("champion_score", "expected"),
    [(0.35, {"champion@0.33", "champion@0.5"}), (0.29, set()), (None, set())],
    ids=["champion-better", "champion-worse", "champion-absent"],
)
def test_champion_challenger(champion_score: float | None, expected: set[str]) -> None:
    name = None if champion_score is None else "models/champion"
    decision = decide(metrics(champion=champion_score), GateParams(), name)
    assert failing(decision) == expected
    names = {c.name for c in decision.checks}
    assert ("champion@0.5" in names) is (champion_score is not None)
    assert decision.champion == name


def test_the_champion_is_not_the_best_baseline() -> None:
    # a better champion fails only the champion check, not gain_vs_best
    decision = decide(metrics(champion=0.35), GateParams(), "models/champion")
    assert not any(n.startswith("gain_vs_best") for n in failing(decision))


def test_gated_metric_defaults_to_the_task_metric_and_can_be_chosen() -> None:
    m = {k.replace("/bleu", "/f1"): v for k, v in metrics("qa").items()}
    assert decide(m, GateParams(), None).metric == "f1"
    assert decide(m, GateParams(), None, reward="gold").metric == "f1"
    with pytest.raises(keys.MetricsError, match=r"no trained teacher_bleu at rate 0\.33"):
        decide(m, GateParams(metric="teacher_bleu"), None)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"task": "qa"}, "metrics are for code, not base.task 'qa'"),
        ({"champion": "models/champion"}, "no production rows at rate 0.33"),
        ({"thresholds": GateParams(rates=(0.25,))}, "rate 0.25 was not evaluated"),
    ],
)
def test_bad_metrics_are_one_clear_error(kwargs: dict, message: str) -> None:
    args = {"thresholds": GateParams(), "champion": None, **kwargs}
    task = args.pop("task", None)
    with pytest.raises(keys.MetricsError, match=message):
        decide(metrics(), args["thresholds"], args["champion"], task=task)


def test_decide_is_pure() -> None:
    m = metrics()
    before = dict(m)
    thresholds = GateParams(min_score=0.35)
    assert decide(m, thresholds, None) == decide(m, thresholds, None)
    assert m == before and thresholds == dataclasses.replace(thresholds)


@pytest.mark.parametrize(
    ("reward", "metric"), [("loglik", "teacher_loglik"), ("taco_rl", "teacher_bleu")]
)
def test_the_gate_scores_what_the_reward_trained_for(reward: str, metric: str) -> None:
    # log-likelihoods are negative: no floor by default, and gains relative to |reference|
    m = {k.replace("/bleu", f"/{metric}"): -v if "/bleu" in k else v for k, v in metrics().items()}
    decision = decide(m, GateParams(), None, reward=reward)
    assert decision.metric == metric
    assert {c.name for c in decision.checks if c.name.startswith("min_score")} == set()
    # trained's -0.30 is worse than start's -0.25 and truncate's -0.28 at every rate
    assert failing(decision) == {f"gain_vs_{w}@{r:g}" for w in ("start", "best") for r in RATES}
    floor = decide(m, GateParams(min_score=-0.2), None, reward=reward)
    assert {"min_score@0.33", "min_score@0.5"} <= failing(floor)
