"""Rewards: every branch of taco_rl and loglik (table-driven), the registry, the LLM-call driver."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from taco.config import ConfigError, RewardParams, from_mapping
from taco.llm.base import LLM
from taco.rl.rewards import (
    REWARDS,
    RewardBatch,
    RewardRegistry,
    compute_rewards,
    loglik_reward,
    rate_penalty,
    taco_rl_reward,
)
from taco.tasks.registry import TaskRegistry

P = RewardParams()  # c = 0.5, tau = 30, floor 0.1 -> -0.4, window -> -0.1
TASKS = TaskRegistry()
QA, CODE, SUMM = TASKS.get("qa"), TASKS.get("code"), TASKS.get("summarization")

# (case, task, L_o, L_c, y_hat, y, expected)
TACO_RL_CASES = [
    ("floor: L_c = 0", QA, 100, 0, None, "Paris", -0.4),
    ("floor: L_c = 0.1 L_o exactly", QA, 100, 10, "Paris", "Paris", -0.4),
    ("floor wins even with an output", SUMM, 1000, 50, "same", "same", -0.4),
    ("window: too short", QA, 100, 11, "Paris", "Paris", -0.1),
    ("window: too long", QA, 200, 131, "Paris", "Paris", -0.1),
    ("window: nothing compressed", SUMM, 100, 100, "x", "x", -0.1),
    ("window edge |L_c - cL_o| = tau is inside", QA, 100, 80, "Paris", "Paris", 1.0),
    ("inside, QA uses F1", QA, 100, 50, "Paris France", "Paris", pytest.approx(2 / 3)),
    ("inside, QA no overlap", QA, 100, 50, "Berlin", "Paris", 0.0),
    ("inside, summary uses BLEU", SUMM, 100, 50, "the same words here", "the same words here", 1.0),
    (
        "inside, code: first line of y_hat",
        CODE,
        40,
        20,
        "Adds numbers.\njunk junk",
        "Adds numbers.",
        1.0,
    ),
    ("inside, LLM failed -> None", QA, 100, 50, None, "Paris", None),
    ("inside, no teacher output -> None", QA, 100, 50, "Paris", None, None),
    ("short prompt: whole prompt inside tau", CODE, 20, 19, "x y", "x y", pytest.approx(1.0)),
]


@pytest.mark.parametrize(
    ("task", "lo", "lc", "y_hat", "y", "expected"),
    [case[1:] for case in TACO_RL_CASES],
    ids=[case[0] for case in TACO_RL_CASES],
)
def test_taco_rl_branches(task: Any, lo: int, lc: int, y_hat: Any, y: Any, expected: Any) -> None:
    batch = RewardBatch(task, [lo], [lc], outputs=[y_hat], teacher_outputs=[y])
    assert taco_rl_reward(batch, P) == [expected]


def test_taco_rl_never_rewards_a_failed_call() -> None:
    batch = RewardBatch(QA, [100] * 3, [50] * 3, outputs=[None] * 3, teacher_outputs=["a"] * 3)
    assert taco_rl_reward(batch, P) == [None, None, None]  # the reference code gave +0.4


def test_every_constant_comes_from_params() -> None:
    params = from_mapping(
        RewardParams,
        {
            "rate": 0.25,
            "tolerance_tokens": 5,
            "floor": 0.2,
            "floor_penalty": -1.0,
            "window_penalty": -0.5,
        },
        "reward",
    )
    assert rate_penalty(100, 20, params) == -1.0  # 20 <= 0.2 * 100
    assert rate_penalty(100, 31, params) == -0.5  # |31 - 25| > 5
    assert rate_penalty(100, 30, params) is None  # |30 - 25| = 5
    with pytest.raises(ConfigError, match=r"reward\.rate"):
        from_mapping(RewardParams, {"rate": 0}, "reward")


# (case, L_o, L_c, mean log-prob, y, expected)
LOGLIK_CASES = [
    ("floor", 100, 5, -0.1, "y", -0.4),
    ("window", 100, 90, -0.1, "y", -0.1),
    ("inside: exp(mean log-prob)", 100, 50, math.log(0.25), "y", pytest.approx(0.25)),
    ("inside: certain", 100, 50, 0.0, "y", 1.0),
    ("inside: not scored", 100, 50, None, "y", None),
    ("inside: no teacher output", 100, 50, -1.0, None, None),
    ("inside: empty teacher output", 100, 50, 0.0, "", None),
    ("inside: nan", 100, 50, math.nan, "y", None),
]


@pytest.mark.parametrize(
    ("lo", "lc", "ll", "y", "expected"),
    [case[1:] for case in LOGLIK_CASES],
    ids=[case[0] for case in LOGLIK_CASES],
)
def test_loglik_branches(lo: int, lc: int, ll: Any, y: Any, expected: Any) -> None:
    batch = RewardBatch(QA, [lo], [lc], teacher_outputs=[y], logliks=[ll])
    assert loglik_reward(batch, P) == [expected]


def test_batch_columns_must_match_in_length() -> None:
    batch = RewardBatch(QA, [100, 100], [50, 50], outputs=["a"], teacher_outputs=["a", "b"])
    with pytest.raises(ValueError, match="1 values for 2 samples"):
        taco_rl_reward(batch, P)


def test_registry() -> None:
    registry = RewardRegistry()
    assert registry.names() == ["gold", "loglik", "taco_rl"]
    assert REWARDS.get("taco_rl").needs == "generate"
    assert REWARDS.get("loglik").needs == "loglik"
    registry.register("length", lambda b, p: [float(c) for c in b.compressed_tokens], needs="none")
    assert registry.get("length").fn(RewardBatch(QA, [10], [4]), P) == [4.0]
    with pytest.raises(ValueError, match="already registered"):
        registry.register("length", taco_rl_reward, needs="none")
    with pytest.raises(ValueError, match="unknown reward"):
        registry.get("nope")


class RecordingLLM(LLM):
    """Answers "Paris"; log-prob -1.0; records every prompt it is asked."""

    def __init__(self) -> None:
        self.generated: list[str] = []
        self.scored: list[tuple[str, str]] = []

    @property
    def identity(self) -> Mapping[str, Any]:
        return {"backend": "recording"}

    def generate(
        self, prompts: Sequence[str], max_new_tokens: int | None = None
    ) -> list[str | None]:
        self.generated.extend(prompts)
        return ["Paris" if "keep" in p else None for p in prompts]

    def loglik(
        self, prompts: Sequence[str], continuations: Sequence[str], **kw: Any
    ) -> list[float]:
        self.scored.extend(zip(prompts, continuations, strict=True))
        return [-1.0] * len(prompts)

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return [len(t.split()) for t in texts]


DRIVER_KW: dict[str, Any] = {
    "compressed_contexts": ["keep ctx0", "ctx1 over-compressed", "keep ctx2", "ctx3 fails"],
    "questions": ["Q0?", "Q1?", "Q2?", "Q3?"],
    "original_tokens": [100, 100, 100, 100],
    "compressed_tokens": [50, 5, 50, 50],
    "teacher_outputs": ["Paris", "Paris", None, "Paris"],
    "params": P,
}


def test_compute_rewards_asks_the_llm_only_inside_the_window() -> None:
    llm = RecordingLLM()
    result = compute_rewards("taco_rl", llm, QA, **DRIVER_KW)
    assert result.rewards == [1.0, -0.4, None, None]
    assert len(llm.generated) == 3 and all("over-compressed" not in p for p in llm.generated)
    assert llm.generated[0] == QA.prompt("keep ctx0", "Q0?")
    assert result.llm_requests == 3 and result.unscorable == 2
    assert result.metrics()["reward/mean"] == pytest.approx(0.3)


def test_compute_rewards_loglik_scores_the_teacher_output() -> None:
    llm = RecordingLLM()
    result = compute_rewards("loglik", llm, QA, **DRIVER_KW)
    assert result.rewards == [pytest.approx(math.exp(-1)), -0.4, None, pytest.approx(math.exp(-1))]
    assert [c for _, c in llm.scored] == ["Paris", "Paris"]  # no call without a teacher output
    assert llm.generated == []


def test_gold_reward_scores_against_the_references() -> None:
    from taco.rl.rewards import gold_reward

    batch = RewardBatch(
        QA,
        [100] * 4,
        [50, 50, 5, 50],
        outputs=["Paris", "Berlin France", "Paris", "Paris"],
        teacher_outputs=["Berlin"] * 4,  # ignored: gold is the target
        references=[["Paris"], ["France"], ["Paris"], []],
    )
    assert gold_reward(batch, P) == [1.0, pytest.approx(2 / 3), -0.4, None]
    llm = RecordingLLM()
    kw = {**DRIVER_KW, "references": [["Paris"]] * 4}
    result = compute_rewards("gold", llm, QA, **kw)
    assert len(llm.generated) == 3  # generates even where the teacher output is missing
    assert result.rewards[1] == -0.4
