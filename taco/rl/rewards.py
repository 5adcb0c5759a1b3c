"""Reward registry: pure functions from a batch to one float (None = unscorable) per sample.

Contract: ``fn(batch: RewardBatch, params: RewardParams) -> list[float | None]``. ``None``
means "cannot score" (the LLM gave no answer, no teacher output): the trainer gives such a
sample zero advantage and counts it — never a bonus (the reference code's +0.4 bug).

Built-in rewards (``reward.name`` in params.yaml), both with the paper's rate window
(docs/algorithm.md §1; L_o / L_c = original / compressed length in target-LLM tokens):

- ``taco_rl``: ``L_c <= floor·L_o`` → ``floor_penalty`` (-0.4); ``|L_c - rate·L_o| > τ`` →
  ``window_penalty`` (-0.1); else ``metric(ŷ, y)`` with ŷ the LLM output on the compressed
  prompt (code: its first line) and y the teacher output; BLEU for summarisation and code,
  SQuAD F1 for QA (the task's metric). Neither penalty needs an LLM call.
- ``loglik``: the same penalties; else ``exp(mean log-prob of y given the compressed
  prompt)``, i.e. the geometric-mean per-token probability of the teacher output, on (0, 1]
  like the metrics (one forward pass, no generation).

``compute_rewards`` is the impure driver: it asks the LLM only for the samples inside the
window and then calls the pure function.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

from taco.config import ConfigError, RewardParams
from taco.llm.base import LLM
from taco.tasks.registry import TaskSpec

Needs = Literal["generate", "loglik", "none"]


@dataclasses.dataclass(frozen=True)
class RewardBatch:
    """Everything a reward may look at, one entry per sample (sequences of equal length)."""

    task: TaskSpec
    original_tokens: Sequence[int]
    compressed_tokens: Sequence[int]
    outputs: Sequence[str | None] = ()  # LLM output on the compressed prompt (None: none)
    teacher_outputs: Sequence[str | None] = ()  # LLM output on the original prompt
    references: Sequence[Sequence[str]] = ()  # gold outputs
    logliks: Sequence[float | None] = ()  # mean log-prob of the teacher output | compressed prompt

    def __len__(self) -> int:
        return len(self.original_tokens)

    def column(self, name: str) -> Sequence[Any]:
        """A per-sample field, or Nones when the batch does not carry it."""
        values = getattr(self, name)
        if not values:
            return [None] * len(self)
        if len(values) != len(self):
            raise ValueError(f"RewardBatch.{name}: {len(values)} values for {len(self)} samples")
        return values


RewardFn = Callable[[RewardBatch, RewardParams], list[float | None]]


@dataclasses.dataclass(frozen=True)
class RewardSpec:
    """A registered reward: the pure function and which LLM call it needs inside the window."""

    name: str
    fn: RewardFn
    needs: Needs


def rate_penalty(
    original_tokens: int, compressed_tokens: int, params: RewardParams
) -> float | None:
    """The paper's penalty for a compressed length, or None when it is inside the window."""
    if compressed_tokens <= params.floor * original_tokens:
        return params.floor_penalty
    if abs(compressed_tokens - params.rate * original_tokens) > params.tolerance_tokens:
        return params.window_penalty
    return None


def windowed(
    batch: RewardBatch, params: RewardParams, score: Callable[[int], float | None]
) -> list[float | None]:
    """``rate_penalty`` for samples outside the window, ``score(i)`` for those inside."""
    out: list[float | None] = []
    for i, (lo, lc) in enumerate(zip(batch.original_tokens, batch.compressed_tokens, strict=True)):
        penalty = rate_penalty(lo, lc, params)
        out.append(penalty if penalty is not None else score(i))
    return out


def taco_rl_reward(batch: RewardBatch, params: RewardParams) -> list[float | None]:
    """docs/algorithm.md §1: penalties outside the window, else the task metric of ŷ against y."""
    outputs, teacher = batch.column("outputs"), batch.column("teacher_outputs")

    def score(i: int) -> float | None:
        if outputs[i] is None or teacher[i] is None:
            return None
        return batch.task.score(outputs[i], [teacher[i]])

    return windowed(batch, params, score)


def loglik_reward(batch: RewardBatch, params: RewardParams) -> list[float | None]:
    """Penalties outside the window, else exp(mean log-prob of the teacher output)."""
    logliks, teacher = batch.column("logliks"), batch.column("teacher_outputs")

    def score(i: int) -> float | None:
        ll = logliks[i]
        if ll is None or not teacher[i] or not math.isfinite(ll):
            return None
        return math.exp(ll)

    return windowed(batch, params, score)


def gold_reward(batch: RewardBatch, params: RewardParams) -> list[float | None]:
    """Penalties outside the window, else the task metric of ŷ against the *gold* references
    (for labelled data: optimises the task itself rather than fidelity to the LLM's own
    full-prompt answer); a row without references is unscorable."""
    outputs, refs = batch.column("outputs"), batch.references

    def score(i: int) -> float | None:
        if outputs[i] is None or i >= len(refs) or not refs[i]:
            return None
        return batch.task.score(outputs[i], list(refs[i]))

    return windowed(batch, params, score)


class RewardRegistry:
    """Name → RewardSpec; an instance pre-filled with ``taco_rl``, ``loglik`` and ``gold``."""

    def __init__(self) -> None:
        self._specs: dict[str, RewardSpec] = {}
        self.register("taco_rl", taco_rl_reward, needs="generate")
        self.register("loglik", loglik_reward, needs="loglik")
        self.register("gold", gold_reward, needs="generate")

    def register(
        self, name: str, fn: RewardFn, *, needs: Needs, replace: bool = False
    ) -> RewardSpec:
        if name in self._specs and not replace:
            raise ValueError(f"reward {name!r} is already registered (pass replace=True)")
        spec = RewardSpec(name, fn, needs)
        self._specs[name] = spec
        return spec

    def get(self, name: str) -> RewardSpec:
        try:
            return self._specs[name]
        except KeyError:
            raise ConfigError(
                f"unknown reward {name!r}; registered: {', '.join(sorted(self._specs))}"
            ) from None

    def names(self) -> list[str]:
        return sorted(self._specs)


#: the registry the pipeline uses; user code may add a reward before training
REWARDS = RewardRegistry()


def register_reward(name: str, fn: RewardFn, *, needs: Needs, replace: bool = False) -> RewardSpec:
    """Add a reward function to the pipeline's registry."""
    return REWARDS.register(name, fn, needs=needs, replace=replace)


@dataclasses.dataclass(frozen=True)
class RewardResult:
    """Rewards plus what was asked of the LLM (for logging)."""

    rewards: list[float | None]
    outputs: list[str | None]
    logliks: list[float | None]
    llm_requests: int

    @property
    def unscorable(self) -> int:
        return sum(r is None for r in self.rewards)

    def metrics(self) -> Mapping[str, float]:
        scored = [r for r in self.rewards if r is not None]
        return {
            "reward/mean": sum(scored) / len(scored) if scored else math.nan,
            "reward/unscorable": float(self.unscorable),
            "llm/requests": float(self.llm_requests),
        }


def compute_rewards(
    name: str,
    llm: LLM | None,
    task: TaskSpec,
    *,
    compressed_contexts: Sequence[str],
    questions: Sequence[str],
    original_tokens: Sequence[int],
    compressed_tokens: Sequence[int],
    teacher_outputs: Sequence[str | None],
    references: Sequence[Sequence[str]] = (),
    params: RewardParams,
    max_new_tokens: int | None = None,
) -> RewardResult:
    """Ask the LLM only for samples inside the rate window, then apply the registered reward."""
    spec = REWARDS.get(name)
    n = len(compressed_contexts)
    todo = [
        i
        for i in range(n)
        if rate_penalty(original_tokens[i], compressed_tokens[i], params) is None
        and (spec.needs != "loglik" or teacher_outputs[i])
    ]
    outputs: list[str | None] = [None] * n
    logliks: list[float | None] = [None] * n
    prompts = [task.prompt(compressed_contexts[i], questions[i]) for i in todo]
    if todo and spec.needs != "none":
        if llm is None:
            raise ValueError(f"reward {name!r} needs an LLM")
        if spec.needs == "generate":
            for i, out in zip(todo, llm.generate(prompts, max_new_tokens), strict=True):
                outputs[i] = out
        else:
            conts = [teacher_outputs[i] or "" for i in todo]
            for i, ll in zip(todo, llm.loglik(prompts, conts, reduction="mean"), strict=True):
                logliks[i] = ll
    batch = RewardBatch(
        task, original_tokens, compressed_tokens, outputs, teacher_outputs, references, logliks
    )
    asked = len(todo) if spec.needs != "none" else 0
    return RewardResult(spec.fn(batch, params), outputs, logliks, asked)
