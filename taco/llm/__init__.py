"""Target/reward LLMs: the interface (``base``), backends (``local``, ``openai``), the answer
cache (``cache``), the embedded SmolLM2 (``embedded``) and ``build_llm``, the factory that
reads ``llm`` params. The LLM layer knows no task and no trainer."""

from __future__ import annotations

import logging
from pathlib import Path

from taco.config import LLMParams
from taco.llm.base import LLM, CachedLLM, LLMError
from taco.llm.cache import LLMCache, default_cache_path

log = logging.getLogger(__name__)


def build_llm(params: LLMParams, *, cache: bool | None = None) -> LLM:
    """The LLM that ``params`` (an ``LLMParams``) describes, wrapped in the cache when enabled."""
    if params.backend == "local":
        from taco.llm.local import LocalLLM

        inner: LLM = LocalLLM.from_source(
            params.model,
            device=params.device,
            dtype=params.dtype,
            batch_size=params.batch_size,
            max_new_tokens=params.max_new_tokens,
        )
    elif params.backend == "openai":
        from taco.llm.openai import OpenAILLM

        inner = OpenAILLM.from_params(params)
    else:  # pragma: no cover - config validation rejects it first
        raise LLMError(f"llm.backend: unknown backend {params.backend!r}")
    use_cache = params.cache if cache is None else cache
    if not use_cache:
        return inner
    path = Path(params.cache_path) if params.cache_path is not None else default_cache_path()
    log.info("LLM cache: %s", path)
    return CachedLLM(inner, LLMCache(path))
