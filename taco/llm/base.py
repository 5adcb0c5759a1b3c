"""The target/reward LLM interface, its on-disk cache wrapper and the LLM token counter.

Backends (``llm.backend`` in params.yaml):

- ``local`` (taco/llm/local.py): a transformers causal LM (folder, hub id when online, GGUF
  file; the embedded default is SmolLM2-135M-Instruct). ``generate`` and ``loglik``.
- ``openai`` (taco/llm/openai.py): any OpenAI-compatible chat-completions endpoint.
  ``generate`` only; a failed call gives ``None``.

Every backend takes the *user message* (the task prompt); a chat template, when the model has
one, is applied by the backend. ``generate`` returns ``None`` for a prompt it could not answer
(unscorable), never a made-up value.
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

from taco.errors import UserError
from taco.llm.cache import CacheStats, LLMCache, cache_key

log = logging.getLogger(__name__)

Reduction = Literal["mean", "sum"]


class LLMError(UserError, RuntimeError):
    """An LLM backend cannot be built or used as configured (the message says why)."""


class LLM(abc.ABC):
    """One small interface for teacher, training and evaluation."""

    #: default for ``generate(max_new_tokens=None)``
    max_new_tokens: int = 32

    @property
    @abc.abstractmethod
    def identity(self) -> Mapping[str, Any]:
        """What determines an answer besides the prompt (backend, model, dtype, decoding...)."""

    @abc.abstractmethod
    def generate(
        self, prompts: Sequence[str], max_new_tokens: int | None = None
    ) -> list[str | None]:
        """Greedy (temperature 0) answers, one per prompt; ``None`` where no answer came."""

    def loglik(
        self,
        prompts: Sequence[str],
        continuations: Sequence[str],
        *,
        reduction: Reduction = "mean",
    ) -> list[float]:
        """Log-probability of each continuation (the assistant's reply) given its prompt.

        ``mean`` is per continuation token, ``sum`` the total; an empty continuation gives 0.0.
        Raises ValueError when the two sequences differ in length, ``LLMError`` when the
        backend cannot score (backends implement ``_loglik``).
        """
        if len(prompts) != len(continuations):
            raise ValueError("loglik: prompts and continuations differ in length")
        return self._loglik(prompts, continuations, reduction)

    def _loglik(
        self, prompts: Sequence[str], continuations: Sequence[str], reduction: Reduction
    ) -> list[float]:
        """The backend's ``loglik`` (lengths already checked); by default it cannot score."""
        raise LLMError(
            f"{type(self).__name__} cannot score log-likelihoods; use llm.backend: local "
            "(or a reward that generates, e.g. taco_rl)"
        )

    @abc.abstractmethod
    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Length of each text in this LLM's tokens (no special tokens, no chat template)."""

    @property
    def stats(self) -> CacheStats | None:
        """Cache counters when the LLM is cached, else None."""
        return None

    def metrics(self) -> dict[str, float]:
        """Namespaced counters for logs (``llm/calls``, ``llm/cache_hit_rate``...)."""
        return {}


class CachedLLM(LLM):
    """Wraps a backend: answers found in the SQLite cache are not asked again.

    ``None`` answers are not stored, so a failed call is retried by the next run.
    """

    def __init__(self, inner: LLM, cache: LLMCache) -> None:
        self.inner = inner
        self.cache = cache
        self.max_new_tokens = inner.max_new_tokens
        self.calls = 0

    @property
    def identity(self) -> Mapping[str, Any]:
        return self.inner.identity

    @property
    def stats(self) -> CacheStats:
        return self.cache.stats

    def metrics(self) -> dict[str, float]:
        return {
            **self.inner.metrics(),
            "llm/calls": float(self.calls),
            **self.cache.stats.as_metrics(),
        }

    def _cached(
        self,
        kind: str,
        prompts: Sequence[str],
        extras: Sequence[Any],
        compute: Callable[[list[int]], Sequence[Any]],
    ) -> list[Any]:
        """Answers of ``kind`` for ``prompts`` (``extras``: what else keys each answer), from
        the cache, or from ``compute(indices)`` for the prompts not found (then stored)."""
        keys = [cache_key(kind, self.identity, p, e) for p, e in zip(prompts, extras, strict=True)]
        found = self.cache.get_many(keys)
        todo = {k: i for i, k in enumerate(keys) if k not in found}  # dedupes repeated prompts
        if todo:
            idx = list(todo.values())
            self.calls += len(idx)
            answers = compute(idx)
            fresh = {keys[i]: a for i, a in zip(idx, answers, strict=True) if a is not None}
            self.cache.put_many(fresh)
            found.update(fresh)
        return [found.get(k) for k in keys]

    def generate(
        self, prompts: Sequence[str], max_new_tokens: int | None = None
    ) -> list[str | None]:
        n = max_new_tokens or self.max_new_tokens
        return self._cached(
            "generate",
            prompts,
            [{"max_new_tokens": n}] * len(prompts),
            lambda idx: self.inner.generate([prompts[i] for i in idx], n),
        )

    def _loglik(
        self, prompts: Sequence[str], continuations: Sequence[str], reduction: Reduction
    ) -> list[float]:
        return self._cached(
            "loglik",
            prompts,
            [{"continuation": c, "reduction": reduction} for c in continuations],
            lambda idx: self.inner.loglik(
                [prompts[i] for i in idx], [continuations[i] for i in idx], reduction=reduction
            ),
        )

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return self.inner.count_tokens(texts)


class LLMTokenCounter:
    """An LLM's token counts as a ``TokenCounter`` (``Compressor(token_counter=...)``), so
    budgets are in the tokens the LLM reads, scores and bills."""

    def __init__(self, llm: LLM) -> None:
        self.llm = llm

    def __call__(self, text: str) -> int:
        return self.llm.count_tokens([text])[0]

    def count_many(self, texts: Sequence[str]) -> list[int]:
        return self.llm.count_tokens(list(texts))
