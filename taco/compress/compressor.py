"""Deterministic prompt compression with a token-classification encoder (LLMLingua-2 API).

``Compressor.from_pretrained`` loads any 2-label token classifier (or a bare encoder with a
fresh head); ``compress`` keeps the words with the highest keep-probability until a global
token budget is met. Encoder work is minimised: each text is tokenized once, cut into full
chunks at sentence/line boundaries, and chunks of all texts run length-bucketed (no padding
to 512) under ``torch.inference_mode``, in float32, bf16 or int8 (``dtype="auto"``: the
fastest of them on this machine whose decisions agree with float32, see taco.device).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import importlib
import inspect
import logging
import math
import os
import textwrap
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal

import numpy as np
import torch

from taco.compress.encoder import (
    collate,
    input_names,
    keep_label_index,
    length_buckets,
    load_encoder,
)
from taco.compress.onnx_int8 import place_encoder, runtime_of
from taco.compress.selection import (
    WORD_SCORE_MODES,
    TokenCounter,
    check_budget_args,
    count_many,
    drop_repeated_forced,
    forced_words,
    item_starts,
    keep_together,
    layout_token,
    select_words,
    span_means,
    span_order_keys,
    token_budget,
    with_position_prior,
    word_scores,
)
from taco.compress.text import (
    Alignment,
    SpecialLayout,
    align,
    check_unit,
    chunk_spans,
    render,
    render_parts,
    span_ids,
    special_layout,
)
from taco.device import TORCH_DTYPES, Precision, precision_candidates, resolve_device
from taco.errors import ArgumentError, ArgumentTypeError

log = logging.getLogger(__name__)

DType = Literal["float32", "bfloat16", "int8", "auto"]
UNIT_KEY = "taco_unit"  # config.json key: the selection unit the compressor was trained for
PRIOR_KEY = "taco_position_prior"  # config.json key: its position prior β (0 = none)
MAX_QUESTION_SHARE = 0.5  # a question may take at most half of an encoder window
AGREEMENT = 0.99  # auto: least share of word decisions a fast path must share with float32
# auto: a fast path first tries chunks of this many context tokens (attention's cost grows
# with the chunk; on trained heads 128-token chunks keep >= 99.6% of float32's 512-token
# decisions, docs/results.md 2026-12-07), then full windows
FAST_CHUNK_TOKENS = 128
CALIBRATION_MODULES = ("json", "csv", "heapq", "argparse")


def calibration_texts() -> list[str]:
    """Real prose and code that every Python carries (a few standard-library module
    docstrings, one function's source; ~1,300 words): where ``dtype="auto"`` checks a fast
    path's keep/drop decisions against float32's before using it."""
    texts = [importlib.import_module(m).__doc__ or "" for m in CALIBRATION_MODULES]
    with contextlib.suppress(OSError, TypeError):  # a Python without its sources
        texts.append(inspect.getsource(textwrap.dedent))
    return [t.strip() for t in texts if t.strip()]


@dataclasses.dataclass(frozen=True)
class CompressionResult:
    """What ``compress`` returns. ``rate`` = compressed/original tokens (fraction kept),
    ``ratio`` = original/compressed; ``kept_spans`` are the kept words' ``(start, end)``
    character offsets in the original text; ``metadata`` says how it was computed (the
    encoder's ``precision`` and ``device``)."""

    compressed_prompt: str
    origin_tokens: int
    compressed_tokens: int
    rate: float
    ratio: float
    kept_spans: tuple[tuple[int, int], ...]
    compressed_prompt_list: tuple[str, ...] = ()
    metadata: Mapping[str, str] = dataclasses.field(default_factory=dict, compare=False)

    @classmethod
    def build(
        cls,
        prompt: str,
        origin: int,
        compressed: int,
        spans: tuple[tuple[int, int], ...] = (),
        prompt_list: tuple[str, ...] | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> CompressionResult:
        rate = compressed / origin if origin else 1.0
        ratio = origin / compressed if compressed else (1.0 if origin == 0 else math.inf)
        return cls(
            prompt, origin, compressed, rate, ratio, spans, prompt_list or (prompt,), metadata or {}
        )

    def to_llmlingua_dict(self) -> dict[str, Any]:
        """LLMLingua's ``compress_prompt`` result: same keys, same string formats. When
        nothing was kept of a non-empty text, ``rate`` is ``"0.0%"`` and ``ratio`` ``"infx"``
        (``float(ratio[:-1])`` reads it back); an empty text gives ``"100.0%"``, ``"1.0x"``."""
        saving = (self.origin_tokens - self.compressed_tokens) * 0.06 / 1000
        return {
            "compressed_prompt": self.compressed_prompt,
            "compressed_prompt_list": list(self.compressed_prompt_list),
            "origin_tokens": self.origin_tokens,
            "compressed_tokens": self.compressed_tokens,
            "ratio": f"{self.ratio:.1f}x",
            "rate": f"{self.rate * 100:.1f}%",
            "saving": f", Saving ${saving:.1f} in GPT-4.",
        }

    def to_dict(self) -> dict[str, Any]:
        """Numeric fields as JSON (``ratio`` is null when nothing was kept)."""
        out = dataclasses.asdict(self)
        out["kept_spans"] = [list(s) for s in self.kept_spans]
        out["compressed_prompt_list"] = list(self.compressed_prompt_list)
        out["metadata"] = dict(self.metadata)
        out["ratio"] = None if math.isinf(self.ratio) else self.ratio
        return out


@dataclasses.dataclass(frozen=True)
class CompressionRequest:
    """One text to compress with its own options (``Compressor.compress_batch``); the
    fields mean what ``Compressor.compress``'s arguments mean (``unit`` None: the model's)."""

    text: str
    rate: float | None = None
    target_tokens: int | None = None
    force_tokens: tuple[str, ...] = ("\n",)
    keep_digits: bool = False
    question: str = ""
    unit: str | None = None
    keep_newlines: bool | None = None

    def check(self) -> None:
        """Raise ValueError/TypeError naming the field and its allowed values when invalid."""
        if not isinstance(self.text, str):
            raise ArgumentTypeError(f"text must be a str, got {type(self.text).__name__}")
        if not isinstance(self.question, str):
            raise ArgumentTypeError(f"question must be a str, got {type(self.question).__name__}")
        check_budget_args(self.rate, self.target_tokens)
        _check_force_tokens(self.force_tokens)
        if self.unit is not None:
            check_unit(self.unit)
        _keep_newlines(self.keep_newlines, ())


@dataclasses.dataclass(frozen=True, eq=False)
class Document:
    """A text prepared for the encoder: its alignment, token chunks and question ids."""

    al: Alignment
    chunks: list[tuple[int, int]]
    question_ids: np.ndarray | None


def fit_budget(
    al: Alignment,
    select: Callable[[int], np.ndarray],
    order: np.ndarray,
    costs: np.ndarray,
    budget: int,
    count: Callable[[str], int],
    keep_newlines: bool = True,
    rounds: int = 4,
    *,
    groups: np.ndarray | None = None,
    rebuild: Callable[[np.ndarray], str] | None = None,
) -> tuple[np.ndarray, str, int]:
    """The kept words whose rebuilt text comes closest to ``budget`` by its real ``count``
    without exceeding it. Word costs are not additive (BPE merges across words, and the line
    breaks and indentation ``render`` keeps): ``select(b)`` (a keep mask for an additive
    word-cost budget ``b``) is called with ``b`` moved by the miss, for a few ``rounds``;
    if none fits, the words first in ``order`` (droppable words, lowest-ranked first) are
    dropped until the text does — with their whole group when ``groups`` (``select_words``)
    is given. ``rebuild(keep)`` makes the text that is counted and returned, which must be
    the final one (default: ``render``; a list of contexts also counts its separators).
    Returns (keep, text, count)."""
    if rebuild is None:

        def rebuild(keep: np.ndarray) -> str:
            return render(al, keep, keep_newlines=keep_newlines)

    target, best, keep = budget, None, None
    for _ in range(rounds):
        keep = select(target)
        text = rebuild(keep)
        n = count(text)
        if n <= budget and (best is None or n > best[2]):
            best = (keep, text, n)
        if n == budget or (best is not None and n > budget):  # as full as it gets
            break
        target += budget - n
    if best is not None:
        return best
    assert keep is not None
    keep = keep.copy()
    bounds = None
    if groups is not None and groups.shape[0]:
        bounds = np.append(np.flatnonzero(np.diff(groups, prepend=-1)), groups.shape[0])
    while n > budget:
        kept_low = order[keep[order]]
        if kept_low.size == 0:
            break
        excess, dropped = n - budget, 0.0
        scale = n / max(int(costs[keep].sum()), 1)  # real tokens per charged token
        for w in kept_low.tolist():
            if not keep[w]:
                continue  # dropped with its group
            lo, hi = (w, w + 1) if bounds is None else (bounds[groups[w]], bounds[groups[w] + 1])
            keep[lo:hi] = False
            dropped += max(int(costs[lo:hi].sum()), 1) * scale
            if dropped >= excess:
                break
        text = rebuild(keep)
        n = count(text)
    return keep, text, n


class Compressor:
    """A prompt compressor: an encoder with a 2-label (drop/keep) token-classification head."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        device: str | torch.device = "auto",
        dtype: DType = "float32",
        token_counter: TokenCounter | None = None,
        max_seq_len: int = 512,
        chunk_tokens: int | None = None,
        batch_tokens: int = 8192,
        batch_rows: int = 16,
        name: str = "",
        unit: str | None = None,
        position_prior: float | None = None,
    ) -> None:
        self.device = resolve_device(device) if isinstance(device, str) else device
        self.tokenizer = tokenizer
        self.name = name
        self.token_counter = token_counter
        self.layout: SpecialLayout = special_layout(tokenizer)
        limit = getattr(tokenizer, "model_max_length", max_seq_len) or max_seq_len
        positions = getattr(model.config, "max_position_embeddings", max_seq_len)
        if getattr(model.config, "model_type", "") in ("roberta", "xlm-roberta", "camembert"):
            positions -= 2  # RoBERTa-style position ids start after the padding index
        self.max_seq_len = int(
            min(max_seq_len, limit if limit < 1_000_000 else max_seq_len, positions)
        )
        self.chunk_tokens = check_chunk_tokens(chunk_tokens)
        self.batch_tokens = max(batch_tokens, self.max_seq_len)
        self.batch_rows = batch_rows
        self.keep_index = keep_label_index(model.config)
        pad = tokenizer.pad_token_id
        self.pad_id = int(pad) if pad is not None else 0
        self.unit = check_unit(unit or getattr(model.config, UNIT_KEY, "word"))
        prior = getattr(model.config, PRIOR_KEY, 0.0) if position_prior is None else position_prior
        self.position_prior = check_position_prior(prior)
        self.metadata: dict[str, str] = {}  # how results are computed (set below)
        candidates, why = precision_candidates(dtype, self.device)
        if len(candidates) == 1:
            self.model, self.precision = place_encoder(model, candidates[0], self.device, name)
            if self.precision != candidates[0]:
                why = f"{why}; {candidates[0]} unavailable"
        else:
            why = self._choose_precision(model, candidates, why)
        self.dtype = TORCH_DTYPES[self.precision]
        self.metadata = {
            "precision": self.precision,
            "runtime": runtime_of(self.model),
            "chunk_tokens": str(self.chunk_tokens or "window"),
            "why": why,
            "device": self.device.type,
        }
        log.debug("compressor %s: %s on %s (%s)", name, self.precision, self.device, why)

    def _choose_precision(self, model: Any, candidates: Sequence[Precision], why: str) -> str:
        """``auto``: the first of ``candidates`` (fastest first) whose keep/drop decisions on
        ``calibration_texts`` agree with float32's on at least ``AGREEMENT`` of the words,
        else float32; each fast precision is tried with ``FAST_CHUNK_TOKENS``-token chunks
        first (unless ``chunk_tokens`` was given), then as asked. Sets ``model``/``precision``
        /``chunk_tokens``; returns the reason, figures included."""
        self.model, self.precision = place_encoder(model, "float32", self.device, self.name)
        reference, asked_chunk = self.model, self.chunk_tokens
        texts = calibration_texts()
        ref = self._keep_masks(texts)
        words = sum(m.size for m in ref)
        notes = []
        for cand in candidates:
            if cand == "float32":
                break
            placed, got = place_encoder(copy.deepcopy(reference), cand, self.device, self.name)
            if got != cand:
                notes.append(f"{cand} unavailable")
                continue
            self.model, self.precision = placed, cand
            chunks = [asked_chunk] if asked_chunk else [FAST_CHUNK_TOKENS, None]
            for chunk in chunks:
                self.chunk_tokens = chunk
                masks = self._keep_masks(texts)
                same = sum(int((a == b).sum()) for a, b in zip(ref, masks, strict=True))
                what = f"{cand} ({runtime_of(placed)}{f', {chunk}-token chunks' if chunk else ''})"
                share = f"{same / max(words, 1):.1%} of {words} calibration words"
                if same >= AGREEMENT * words:
                    return f"{why}; {what} decisions = float32 on {share}"
                notes.append(f"{what} decisions = float32 on only {share}")
        self.model, self.precision, self.chunk_tokens = reference, "float32", asked_chunk
        return f"{why}; {'; '.join(notes)}: float32"

    def _keep_masks(self, texts: Sequence[str]) -> list[np.ndarray]:
        """Per word of each text: kept at rate 0.5 with the compressor's defaults."""
        results = self.compress_many(texts, rate=0.5)
        return [
            np.isin(self.prepare(t).al.word_start, [s for s, _ in r.kept_spans])
            for t, r in zip(texts, results, strict=True)
        ]

    # ------------------------------------------------------------------ loading / saving

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | os.PathLike[str] | None = None,
        *,
        device: str = "auto",
        dtype: DType = "float32",
        token_counter: TokenCounter | None = None,
        max_seq_len: int = 512,
        chunk_tokens: int | None = None,
        unit: str | None = None,
        position_prior: float | None = None,
    ) -> Compressor:
        """Load a compressor folder (or hub id when online); ``None`` = the embedded
        all-MiniLM-L6-v2 encoder with a fresh, *untrained* keep/drop head. ``unit`` (what
        the budget keeps whole: word, sentence or line) defaults to the one the model was
        trained with (``taco_unit`` in its config.json), else ``word``; ``position_prior``
        (β of ``with_position_prior``) likewise (``taco_position_prior``), else 0.
        ``dtype``: float32 (training needs it), bfloat16, int8 (dynamic quantization of the
        linear layers, CPU only, inference only) or auto: per machine, the fastest precision
        (``precision_candidates``) whose decisions on ``calibration_texts`` agree with
        float32's on ≥ 99% of the words (checked at load; a fast precision is first tried
        with ``FAST_CHUNK_TOKENS``-token chunks, which cut attention's work); a precision this
        machine cannot run falls back to float32 with a warning. On a CPU, int8 runs on ONNX
        Runtime (fused, ``taco.compress.onnx_int8``) where it is installed, else torch.
        ``chunk_tokens``: context tokens per encoder chunk (None: as many as ``max_seq_len``
        holds)."""
        model, tokenizer, name = load_encoder(name_or_path)
        return cls(
            model,
            tokenizer,
            device=device,
            dtype=dtype,
            token_counter=token_counter,
            max_seq_len=max_seq_len,
            chunk_tokens=chunk_tokens,
            name=name,
            unit=unit,
            position_prior=position_prior,
        )

    def save_pretrained(self, path: str | os.PathLike[str]) -> None:
        """Save as a plain Hugging Face token-classification folder (weights + tokenizer);
        the selection unit and position prior are recorded as ``taco_unit`` and
        ``taco_position_prior`` in its config.json. An int8 compressor cannot be saved (its
        weights are packed for one kernel library): save the float32 one it was loaded from."""
        if self.precision == "int8":
            raise ValueError("an int8 compressor cannot be saved: load it with dtype='float32'")
        setattr(self.model.config, UNIT_KEY, self.unit)
        setattr(self.model.config, PRIOR_KEY, self.position_prior)
        self.model.save_pretrained(path)
        self.tokenizer.save_pretrained(path)

    # --------------------------------------------------------------------------- compress

    def compress(
        self,
        text: str,
        *,
        rate: float | None = None,
        target_tokens: int | None = None,
        force_tokens: Iterable[str] = ("\n",),
        keep_digits: bool = False,
        question: str = "",
        unit: str | None = None,
        keep_newlines: bool | None = None,
    ) -> CompressionResult:
        """Compress one text to ``rate`` (fraction of tokens kept) or ``target_tokens``.

        ``question`` (optional) is read by the encoder with the text but never compressed
        nor returned. ``force_tokens`` are strings kept first and whole (an occurrence of
        several words, e.g. a URL, is kept whole or not at all) and ``keep_digits`` keeps
        every number (``taco.compress.text.NUMBER``: one word, never cut); the budget still
        holds, so forced strings that do not all fit are kept whole in ranking order (with a
        warning).
        ``keep_newlines`` keeps line breaks and indentation (default: whether ``"\\n"`` is
        among ``force_tokens``, as in LLMLingua); a whitespace force token other than line
        breaks is a ValueError. ``unit`` overrides the compressor's selection unit: ``word``
        ranks words one by one, ``sentence``/``line`` keep the best spans (mean word score)
        whole and the start of the next one to fill the budget.
        """
        return self.compress_many(
            [text],
            rate=rate,
            target_tokens=target_tokens,
            force_tokens=force_tokens,
            keep_digits=keep_digits,
            questions=[question],
            unit=unit,
            keep_newlines=keep_newlines,
        )[0]

    def compress_many(
        self,
        texts: Sequence[str],
        *,
        rate: float | None = None,
        target_tokens: int | None = None,
        force_tokens: Iterable[str] = ("\n",),
        keep_digits: bool = False,
        questions: Sequence[str] | None = None,
        unit: str | None = None,
        keep_newlines: bool | None = None,
    ) -> list[CompressionResult]:
        """Compress several texts; their chunks share encoder batches. Each text gets its
        own budget (``rate`` of its tokens, or ``target_tokens``); options as ``compress``."""
        check_budget_args(rate, target_tokens)
        texts = _check_texts(texts, "texts")
        qs = _check_texts(questions, "questions") if questions is not None else [""] * len(texts)
        if len(qs) != len(texts):
            raise ArgumentError(f"questions has {len(qs)} items but texts has {len(texts)}")
        force = _check_force_tokens(force_tokens)
        return self.compress_batch(
            [
                CompressionRequest(
                    t, rate, target_tokens, force, keep_digits, q, unit, keep_newlines
                )
                for t, q in zip(texts, qs, strict=True)
            ]
        )

    def compress_batch(self, requests: Sequence[CompressionRequest]) -> list[CompressionResult]:
        """Compress several requests, each with its own options; all chunks share encoder
        batches, and each result equals ``compress`` of that request alone. Raises
        ArgumentError/ArgumentTypeError (ValueError/TypeError; naming the field) when any
        request is invalid."""
        for r in requests:
            r.check()
        docs = [self.prepare(r.text, r.question) for r in requests]
        probs = self._encode(docs)
        results = []
        for r, doc, p in zip(requests, docs, probs, strict=True):
            force = _check_force_tokens(r.force_tokens)
            newlines = _keep_newlines(r.keep_newlines, force)
            unit = check_unit(r.unit or self.unit)
            results.append(
                self._select(doc, p, r.rate, r.target_tokens, force, r.keep_digits, unit, newlines)
            )
        return results

    def compress_prompt(
        self,
        context: str | Sequence[str],
        rate: float | None = None,
        target_token: int = -1,
        force_tokens: Sequence[str] | None = None,
        force_reserve_digit: bool = False,
        question: str = "",
        keep_newlines: bool | None = None,
        return_word_label: bool = False,
        word_sep: str = "\t\t|\t\t",
        label_sep: str = " ",
        token_to_word: str = "mean",
        drop_consecutive: bool = False,
        **llmlingua_options: Any,
    ) -> dict[str, Any]:
        """Drop-in for LLMLingua-2's ``PromptCompressor.compress_prompt``: same argument
        names (``target_token=-1`` and ``rate=None`` mean "not given"; neither → rate 0.5),
        same result dict. A list context is compressed under one shared budget that counts
        the whole ``compressed_prompt``: the kept contexts joined by ``CONTEXT_SEPARATOR``
        (contexts with nothing kept, blank ones included, add no separator);
        ``compressed_prompt_list`` has one entry per context, in order (``""`` where nothing
        was kept). ``keep_newlines`` as in ``compress``.

        As in LLMLingua-2: ``token_to_word`` (``mean`` | ``first``) turns sub-token
        keep-probabilities into a word's; ``drop_consecutive`` drops a kept forced word that
        repeats the kept word before it (``. .`` → ``.``); ``return_word_label`` adds
        ``fn_labeled_original_prompt``: every word of the context(s) with its label (1 kept,
        0 dropped), ``f"{word}{label_sep}{label}"`` joined by ``word_sep``. LLMLingua's
        context-level options (``use_context_level_filter``, ``chunk_end_tokens``, ...) are
        accepted; given a value other than LLMLingua's default they have no effect here and
        log a warning. Raises ``ArgumentError``/``ArgumentTypeError`` naming a bad argument."""
        unknown = sorted(set(llmlingua_options) - set(_LLMLINGUA_NO_EFFECT))
        if unknown:
            raise ArgumentTypeError(
                f"compress_prompt() got unsupported argument(s): {', '.join(unknown)}"
            )
        changed = {
            k: v
            for k, v in llmlingua_options.items()
            if (list(v) if isinstance(v, tuple) else v) != _LLMLINGUA_NO_EFFECT[k]
        }
        if changed:
            log.warning(
                "compress_prompt: %s: no effect in taco, which compresses every context at "
                "the token level, cut into chunks at sentence ends and line breaks",
                ", ".join(f"{k}={v!r}" for k, v in sorted(changed.items())),
            )
        if token_to_word not in WORD_SCORE_MODES:
            raise ArgumentError(
                f"token_to_word must be one of {', '.join(WORD_SCORE_MODES)}, got {token_to_word!r}"
            )
        if isinstance(target_token, bool) or not isinstance(target_token, int):
            raise ArgumentTypeError(
                f"target_token must be an integer, got {type(target_token).__name__}"
            )
        if target_token < -1:
            raise ArgumentError(f"target_token must be >= 0 (or -1 for unset), got {target_token}")
        target = None if target_token == -1 else target_token
        if rate is None and target is None:
            rate = 0.5
        contexts = [context] if isinstance(context, str) else _check_texts(context, "context")
        if not contexts:
            raise ArgumentError("context is an empty list")
        check_budget_args(rate, target)
        force = _check_force_tokens(force_tokens or ())
        newlines = _keep_newlines(keep_newlines, force)
        joined = CONTEXT_SEPARATOR.join(contexts)
        bounds, pos = [], 0
        for c in contexts:
            bounds.append((pos, pos + len(c)))
            pos += len(c) + len(CONTEXT_SEPARATOR)
        doc = self.prepare(joined, question)
        probs = self._encode([doc])[0]
        res = self._select(
            doc,
            probs,
            rate,
            target,
            force,
            force_reserve_digit,
            self.unit,
            newlines,
            bounds,
            token_to_word=token_to_word,
            drop_consecutive=drop_consecutive,
        )
        out = res.to_llmlingua_dict()
        if return_word_label:
            out["fn_labeled_original_prompt"] = word_labels(
                doc.al, res.kept_spans, word_sep, label_sep
            )
        return out

    # ----------------------------------------------------------------------------- encoder

    def prepare(self, text: str, question: str = "") -> Document:
        """Tokenize once, align words, and cut into encoder windows."""
        al = align(text, self.tokenizer)
        q_ids = None
        if question.strip():
            q = self.tokenizer(question, add_special_tokens=False, verbose=False)["input_ids"]
            cap = int(self.max_seq_len * MAX_QUESTION_SHARE)
            if len(q) > cap:
                log.warning("question has %d tokens; the encoder reads its first %d", len(q), cap)
                q = q[:cap]
            q_ids = np.asarray(q, dtype=np.int64)
        window = self.max_seq_len - self.layout.overhead(0 if q_ids is None else len(q_ids))
        if self.chunk_tokens:
            window = min(window, self.chunk_tokens)
        return Document(al, chunk_spans(al, window) if al.n_tokens else [], q_ids)

    def token_probabilities(
        self, texts: Sequence[str], questions: Sequence[str] | None = None
    ) -> list[np.ndarray]:
        """p(keep) per context token of each text (one encoder pass over all chunks)."""
        qs = questions if questions is not None else [""] * len(texts)
        return self._encode([self.prepare(t, q) for t, q in zip(texts, qs, strict=True)])

    def encoder_rows(
        self, docs: Sequence[Document]
    ) -> tuple[list[tuple[np.ndarray, np.ndarray]], list[tuple[int, int, int, int]]]:
        """Encoder inputs ``(input_ids, token_type_ids)`` for every chunk of ``docs``, and
        where each row's context tokens belong: ``(doc index, token start, token end,
        offset of the first context token in the row)``."""
        rows: list[tuple[np.ndarray, np.ndarray]] = []
        where: list[tuple[int, int, int, int]] = []
        for d, doc in enumerate(docs):
            for s, e in doc.chunks:
                ids, types, offset = self.layout.build(doc.al.token_ids[s:e], doc.question_ids)
                rows.append((ids, types))
                where.append((d, s, e, offset))
        return rows, where

    def _encode(self, docs: Sequence[Document]) -> list[np.ndarray]:
        rows, where = self.encoder_rows(docs)
        out = [np.zeros(doc.al.n_tokens, dtype=np.float32) for doc in docs]
        for batch in length_buckets([len(r[0]) for r in rows], self.batch_tokens, self.batch_rows):
            p = self._forward([rows[i] for i in batch])
            for j, i in enumerate(batch):
                d, s, e, off = where[i]
                out[d][s:e] = p[j, off : off + e - s]
        return out

    def logits(self, rows: Sequence[tuple[np.ndarray, np.ndarray]]) -> torch.Tensor:
        """Encoder logits ``(rows, positions, 2)`` for right-padded rows (with autograd
        when called outside ``torch.inference_mode``: the training policy uses this)."""
        inputs = collate(rows, self.pad_id, self.device)
        return self.model(**{n: inputs[n] for n in input_names(self.model.config)}).logits

    @torch.inference_mode()
    def _forward(self, rows: Sequence[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
        return self.logits(rows).float().softmax(-1)[..., self.keep_index].cpu().numpy()

    # ---------------------------------------------------------------------------- selection

    def count_tokens(self, text: str) -> int:
        """Length of ``text`` in the budget's units (``token_counter``, else the encoder's)."""
        if self.token_counter is None:
            return len(self.tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])
        return int(self.token_counter(text))

    def budget_costs(self, doc: Document) -> tuple[int, np.ndarray]:
        """The budget's units for ``doc``: its context length and each word's cost, in the
        ``token_counter``'s tokens (the target LLM's) when set, else the encoder's."""
        al = doc.al
        if self.token_counter is None:
            return al.n_tokens, al.word_n_tokens
        costs = np.asarray(count_many(self.token_counter, al.words()), dtype=np.int64)
        return self.count_tokens(al.text), costs

    def fit_words(
        self,
        doc: Document,
        scores: np.ndarray,
        costs: np.ndarray,
        budget: int,
        unit: str = "word",
        keep_newlines: bool = True,
        groups: np.ndarray | None = None,
        rebuild: Callable[[np.ndarray], str] | None = None,
    ) -> tuple[np.ndarray, str, int]:
        """The words ``select_words`` keeps by ranking ``scores`` within ``budget`` (word
        ``costs`` from ``budget_costs``; ``groups`` kept whole), fitted so the real count of
        the rebuilt text (``rebuild``, default ``render``) does not exceed it
        (``fit_budget``). Returns (keep, text, count)."""
        return fit_budget(
            doc.al,
            lambda b: select_words(scores, costs, b, unit=unit, groups=groups),
            np.argsort(scores, kind="stable"),
            costs,
            budget,
            self.count_tokens,
            keep_newlines,
            groups=groups,
            rebuild=rebuild,
        )

    def _select(
        self,
        doc: Document,
        token_probs: np.ndarray,
        rate: float | None,
        target_tokens: int | None,
        force: tuple[str, ...],
        keep_digits: bool,
        unit: str = "word",
        keep_newlines: bool = True,
        segments: Sequence[tuple[int, int]] | None = None,
        *,
        token_to_word: str = "mean",
        drop_consecutive: bool = False,
    ) -> CompressionResult:
        """Global budget over the whole text; ``segments`` (character ranges of a list's
        contexts in the joined text) give LLMLingua's ``compressed_prompt_list``, and the
        budget then counts the kept contexts joined by ``CONTEXT_SEPARATOR``;
        ``token_to_word`` and ``drop_consecutive`` as in ``compress_prompt``."""
        al = doc.al
        if al.n_words == 0:
            return CompressionResult.build(
                "", 0, 0, (), ("",) * len(segments or ("",)), self.metadata
            )
        origin, costs = self.budget_costs(doc)
        budget = token_budget(origin, rate, target_tokens)
        probs = word_scores(token_probs, al, token_to_word)
        scores = ranking_scores(probs, al, unit, self.position_prior)
        forced = forced_words(al, force, keep_digits)
        groups = keep_together(al, force)
        scores = scores + (np.ptp(scores) + 1.0) * forced  # forced words first
        rebuild = None
        if segments is not None:

            def rebuild(keep: np.ndarray) -> str:
                parts = render_parts(al, keep, segments, keep_newlines=keep_newlines)
                return join_contexts(parts)

        keep, text, count = self.fit_words(
            doc, scores, costs, budget, unit, keep_newlines, groups, rebuild
        )
        if drop_consecutive:
            deduped = drop_repeated_forced(al, keep, forced)
            if not np.array_equal(deduped, keep):
                keep = deduped
                text = rebuild(keep) if rebuild else render(al, keep, keep_newlines=keep_newlines)
                count = self.count_tokens(text)
        if forced.any() and not keep[forced].all():
            log.warning(
                "forced words (force_tokens%s) need more than the budget of %d tokens: "
                "kept %d of %d, whole, in ranking order",
                ", keep_digits" if keep_digits else "",
                budget,
                int(keep[forced].sum()),
                int(forced.sum()),
            )
        idx = np.flatnonzero(keep)
        spans = tuple(zip(al.word_start[idx].tolist(), al.word_end[idx].tolist(), strict=True))
        parts = None
        if segments is not None:
            parts = render_parts(al, keep, segments, keep_newlines=keep_newlines)
        return CompressionResult.build(text, origin, count, spans, parts, self.metadata)


CONTEXT_SEPARATOR = "\n\n"  # between the contexts of a list (LLMLingua's)


def join_contexts(parts: Sequence[str]) -> str:
    """The compressed prompt of a list of contexts: the non-empty ``parts`` joined by
    ``CONTEXT_SEPARATOR`` (a context with nothing kept adds no separator)."""
    return CONTEXT_SEPARATOR.join(p for p in parts if p)


# LLMLingua-2 options taco accepts without effect, with LLMLingua 0.2.2's defaults (a value
# other than these logs a warning)
_LLMLINGUA_NO_EFFECT: dict[str, Any] = {
    "use_context_level_filter": False,
    "use_token_level_filter": True,
    "chunk_end_tokens": [".", "\n"],
    "instruction": "",
    "use_sentence_level_filter": False,
    "target_context": -1,
    "context_level_rate": 1.0,
    "context_level_target_token": -1,
    "force_context_ids": None,
}


def word_labels(
    al: Alignment, kept_spans: Iterable[tuple[int, int]], word_sep: str, label_sep: str
) -> str:
    """LLMLingua-2's ``fn_labeled_original_prompt``: every word of ``al`` (in order) as
    ``f"{word}{label_sep}{label}"`` (1: its span is in ``kept_spans``, else 0), joined by
    ``word_sep``."""
    kept = {start for start, _ in kept_spans}
    return word_sep.join(
        f"{al.text[a:b]}{label_sep}{int(a in kept)}"
        for a, b in zip(al.word_start.tolist(), al.word_end.tolist(), strict=True)
    )


def ranking_scores(
    scores: np.ndarray, al: Alignment, unit: str, position_prior: float = 0.0
) -> np.ndarray:
    """Word ranking for ``select_words`` from word ``scores`` (mean keep-probabilities): the
    scores themselves, or span keys (spans by their mean score); with a position prior β,
    each item (word or span) ranks by ``with_position_prior`` instead."""
    if unit == "word" and not position_prior:
        return scores
    spans = span_ids(al, unit)
    items = scores if unit == "word" else span_means(scores, spans)
    items = with_position_prior(items, item_starts(al, spans), position_prior)
    return items if unit == "word" else span_order_keys(items, spans)


def check_chunk_tokens(chunk_tokens: Any) -> int | None:
    """``chunk_tokens``: None, or an int in [8, 1,000,000] (context tokens per chunk)."""
    if chunk_tokens is None:
        return None
    if isinstance(chunk_tokens, bool) or not isinstance(chunk_tokens, int):
        raise ArgumentTypeError(f"chunk_tokens must be an int or None, got {chunk_tokens!r}")
    if not 8 <= chunk_tokens <= 1_000_000:
        raise ArgumentError(f"chunk_tokens must be in [8, 1000000], got {chunk_tokens}")
    return chunk_tokens


def check_position_prior(prior: Any) -> float:
    """β of ``with_position_prior``: a finite number >= 0."""
    if isinstance(prior, bool) or not isinstance(prior, int | float) or not 0 <= prior < math.inf:
        raise ArgumentError(f"position_prior must be a finite number >= 0, got {prior!r}")
    return float(prior)


def _check_texts(texts: Any, name: str) -> list[str]:
    if isinstance(texts, (bytes, bytearray)):
        raise ArgumentTypeError(
            f"{name} must be a str or a list of strings, got {type(texts).__name__} "
            "(decode it first, e.g. .decode('utf-8'))"
        )
    if isinstance(texts, str) or not isinstance(texts, Sequence):
        raise ArgumentTypeError(f"{name} must be a list of strings, got {type(texts).__name__}")
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise ArgumentTypeError(f"{name}[{i}] must be a str, got {type(t).__name__}")
    return list(texts)


def _check_force_tokens(force_tokens: Any) -> tuple[str, ...]:
    if isinstance(force_tokens, str):
        force_tokens = (force_tokens,)
    try:
        force = tuple(force_tokens)
    except TypeError:
        raise ArgumentTypeError(
            f"force_tokens must be a list of strings, got {type(force_tokens).__name__}"
        ) from None
    for t in force:
        if not isinstance(t, str) or not t:
            raise ArgumentTypeError(f"force_tokens must hold non-empty strings, got {t!r}")
        if not t.strip() and not layout_token(t):
            raise ArgumentError(
                f"force token {t!r} is only whitespace: of whitespace only line breaks "
                '("\\n") can be forced (keep_newlines); spaces and tabs between kept words '
                "come from the original text"
            )
    return force


def _keep_newlines(keep_newlines: bool | None, force: tuple[str, ...]) -> bool:
    """``keep_newlines`` as given, else whether a line-break force token (``"\\n"``) is
    among ``force`` (LLMLingua's convention)."""
    if keep_newlines is None:
        return any(layout_token(t) for t in force)
    if not isinstance(keep_newlines, bool):
        raise ArgumentTypeError(f"keep_newlines must be True, False or None, got {keep_newlines!r}")
    return keep_newlines


# The public face of inference: the pieces below live in taco.compress.selection/encoder/device.
__all__ = [
    "CompressionRequest",
    "CompressionResult",
    "Compressor",
    "Document",
    "ranking_scores",
]
