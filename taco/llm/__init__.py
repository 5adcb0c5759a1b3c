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


def load_llm_tokenizer(params: LLMParams) -> object:
    """The Hugging Face tokenizer that the LLM of ``params`` counts tokens with (what every
    budget in "LLM tokens" means), loaded without the model: ``llm.openai.tokenizer`` (default
    the embedded SmolLM2's) for ``openai``; ``llm.model``'s (a folder, a ``.gguf`` file or a
    hub id; default the embedded SmolLM2's) for ``local``. Raises ``LLMError`` when it cannot
    be loaded here (e.g. a hub id while offline)."""
    from taco.llm.embedded import load_tokenizer

    source = params.openai.tokenizer if params.backend == "openai" else params.model
    try:
        if source and Path(source).suffix == ".gguf":
            path = Path(source).expanduser()
            from transformers import AutoTokenizer

            return AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
        return load_tokenizer(None if source in (None, "", "embedded") else source)
    except (OSError, ValueError) as exc:
        raise LLMError(f"the tokenizer of {source!r} does not load: {exc}") from None


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
