"""The `warmstart` stage: supervised keep/drop labels and cross-entropy training of a fresh head.

Label sources (``warmstart.labels``):

- ``self_information`` (embedded default, Selective-Context style): a local causal LM reads
  each context; a word's self-information is the surprisal (−log p) of the characters it
  covers. Words are ranked by self-information per encoder token and the top ones are
  labelled keep until ``warmstart.rate`` of the context's tokens is reached (the same
  budgeted selection inference uses).
- ``llm`` (LLMLingua-2's recipe, docs/algorithm.md §7): the configured LLM compresses each context
  by deleting words only; its output is aligned back to the context's words in order, and
  contexts whose output aligns badly (< ``warmstart.min_alignment`` of its words found) or
  does not compress at all are dropped.
- ``overlap`` (task-aware, extractive-oracle style): the spans (``train.unit``: words,
  sentences or lines) that share the most words with the target LLM's own answer on the
  full prompt (the teacher stage's output) and with the question are labelled keep, best
  first (ties: earlier), until ``warmstart.rate`` of the tokens. The encoder, which reads the
  question with the context, learns what the answer is drawn from; no extra LLM call.

The labelled contexts go through the encoder exactly as in inference and training
(``Compressor.prepare(context, question)``), and the model is saved as a plain Hugging Face
token-classification folder. When ``train.base_model`` already is a compressor, or with
``warmstart.labels: none`` (RL from the fresh head, which ``train.position_prior`` makes
truncation), the stage writes only ``warmstart.json`` saying it was skipped.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from taco.compress.compressor import Compressor, Document
from taco.compress.selection import select_words, span_means, span_order_keys
from taco.compress.text import Alignment, align, span_ids
from taco.config import Params, WarmstartParams, to_dict
from taco.errors import StageFailed
from taco.layout import WARMSTART_RECORD, Layout
from taco.rl.checkpoint import is_compressor, save_model_atomic
from taco.rl.optim import adamw, autocast, training_attention
from taco.rl.rows import TrainError

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from taco.llm.base import LLM
    from taco.llm.local import LocalLLM

log = logging.getLogger(__name__)

MAX_LM_TOKENS = 2048
DELETION_PROMPT = (
    "Compress the following text by deleting unimportant words. You may ONLY delete words: "
    "do not reorder, change or add any word. Keep every word needed to {goal}.\n\n"
    "Text:\n{context}\n\nCompressed text:"
)


# ---------------------------------------------------------------------- self-information


def char_surprisal(text: str, offsets: np.ndarray, surprisal: np.ndarray) -> np.ndarray:
    """Spread each LM token's surprisal evenly over the characters it covers."""
    per_char = np.zeros(len(text) + 1, dtype=np.float64)
    width = np.maximum(offsets[:, 1] - offsets[:, 0], 1)
    dens = surprisal / width
    # difference array: add dens on [start, end)
    np.add.at(per_char, offsets[:, 0], dens)
    np.add.at(per_char, offsets[:, 1], -dens)
    return np.cumsum(per_char)[: len(text)]


def word_information(al: Alignment, per_char: np.ndarray) -> np.ndarray:
    """Self-information per word: the surprisal of the characters it covers."""
    cum = np.zeros(per_char.shape[0] + 1)
    np.cumsum(per_char, out=cum[1:])
    return cum[al.word_end] - cum[al.word_start]


def budget_labels(
    al: Alignment, scores: np.ndarray, rate: float, position_bias: float = 0.0
) -> np.ndarray:
    """Keep the best words per encoder token until ``rate`` of the tokens (word mask).

    With ``position_bias`` λ > 0 a word's rank mixes its score percentile with how early it
    comes: ``(1-λ)·pct(score/token) + λ·(1 - position/n)`` (λ = 1 is truncation).
    """
    budget = math.floor(rate * al.n_tokens + 1e-9)
    density = mix_position(scores / al.word_n_tokens, position_bias)
    return select_words(density, al.word_n_tokens, budget)


def mix_position(scores: np.ndarray, position_bias: float) -> np.ndarray:
    """``(1-λ)·percentile(score) + λ·(1 - position/n)``; the scores unchanged when λ = 0."""
    n = scores.shape[0]
    if position_bias <= 0 or n < 2:
        return scores
    pct = np.argsort(np.argsort(scores, kind="stable"), kind="stable") / (n - 1)
    early = 1.0 - np.arange(n) / (n - 1)
    return (1.0 - position_bias) * pct + position_bias * early


@torch.inference_mode()
def lm_surprisal(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    batch_tokens: int = 2048,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """(offsets, surprisal in nats) of every LM token of each text (first token without a
    BOS: the text's mean). Length-sorted, right-padded batches of about ``batch_tokens``."""
    from taco.compress.encoder import length_buckets

    device = next(model.parameters()).device
    bos = tokenizer.bos_token_id
    prefix = [bos] if bos is not None else []
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    encs = [
        tokenizer(
            t,
            add_special_tokens=False,
            return_offsets_mapping=True,
            truncation=True,
            max_length=MAX_LM_TOKENS,
        )
        for t in texts
    ]
    seqs = [prefix + list(e["input_ids"]) for e in encs]
    out: list[tuple[np.ndarray, np.ndarray]] = [
        (np.asarray(e["offset_mapping"], dtype=np.int64).reshape(-1, 2), np.zeros(0)) for e in encs
    ]
    todo = [i for i, e in enumerate(encs) if e["input_ids"]]
    for batch in length_buckets([len(seqs[i]) for i in todo], batch_tokens, 64):
        rows = [todo[j] for j in batch]
        width = max(len(seqs[i]) for i in rows)
        x = torch.full((len(rows), width), pad, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for r, i in enumerate(rows):
            x[r, : len(seqs[i])] = torch.tensor(seqs[i])
            mask[r, : len(seqs[i])] = 1
        x, mask = x.to(device), mask.to(device)
        logits = model(input_ids=x, attention_mask=mask).logits[:, :-1].float()
        lp = logits.gather(-1, x[:, 1:].unsqueeze(-1)).squeeze(-1) - logits.logsumexp(-1)
        for r, i in enumerate(rows):
            s = -lp[r, : len(seqs[i]) - 1].cpu().numpy().astype(np.float64)
            if not prefix:  # the first token has no context: give it the mean
                s = np.concatenate([[s.mean() if s.size else 0.0], s])
            out[i] = (out[i][0], s)
    return out


def self_information_labels(
    llm: LocalLLM, alignments: Sequence[Alignment], rate: float, position_bias: float = 0.0
) -> list[np.ndarray]:
    """Word keep labels from a local causal LM's surprisal (its ``model`` and ``tokenizer``)."""
    stats = lm_surprisal(llm.model, llm.tokenizer, [al.text for al in alignments])
    labels = []
    for al, (offsets, s) in zip(alignments, stats, strict=True):
        info = word_information(al, char_surprisal(al.text, offsets, s))
        labels.append(budget_labels(al, info, rate, position_bias))
    return labels


# ------------------------------------------------------------------------------- llm teacher


def _norm(word: str) -> str:
    return "".join(ch for ch in word.lower() if ch.isalnum()) or word


def align_deletion(original: Sequence[str], compressed: Sequence[str], window: int = 50):
    """Match compressed words to original words in order (greedy, within ``window`` words).

    Returns the keep mask over ``original`` and the share of compressed words matched.
    """
    keep = np.zeros(len(original), dtype=bool)
    norm = [_norm(w) for w in original]
    pos = matched = 0
    for w in compressed:
        target = _norm(w)
        for j in range(pos, min(pos + window, len(norm))):
            if norm[j] == target:
                keep[j] = True
                pos, matched = j + 1, matched + 1
                break
    share = matched / len(compressed) if compressed else 0.0
    return keep, share


def llm_labels(
    llm: LLM,
    alignments: Sequence[Alignment],
    tokenizer: PreTrainedTokenizerBase,
    *,
    goal: str,
    min_alignment: float,
    max_new_tokens: int,
) -> list[np.ndarray | None]:
    """Word keep labels from an LLM's deletion-only compression; None where filtered out."""
    prompts = [DELETION_PROMPT.format(goal=goal, context=al.text) for al in alignments]
    outputs = llm.generate(prompts, max_new_tokens)
    labels: list[np.ndarray | None] = []
    for al, out in zip(alignments, outputs, strict=True):
        if not out:
            labels.append(None)
            continue
        keep, share = align_deletion(al.words(), align(out, tokenizer).words())
        kept = keep.mean() if keep.size else 1.0
        labels.append(keep if share >= min_alignment and 0.0 < kept < 0.98 else None)
    return labels


# --------------------------------------------------------------------------- overlap teacher

_WORD = re.compile(r"\w+")


def overlap_labels(
    alignments: Sequence[Alignment],
    targets: Sequence[str],
    rate: float,
    unit: str = "word",
    position_bias: float = 0.0,
) -> list[np.ndarray]:
    """Keep the spans whose words most often occur in the target text (the teacher output
    and question), best first, until ``rate`` of each context's tokens (word masks).
    ``position_bias`` λ ranks spans by ``(1-λ)·pct(share of overlapping words) + λ·earliness``
    as ``budget_labels`` does for words."""
    labels = []
    for al, target in zip(alignments, targets, strict=True):
        vocab = {w for w in _WORD.findall(target.lower()) if len(w) >= 3 or w.isdigit()}
        hits = np.array([_norm(w) in vocab for w in al.words()], dtype=np.float64)
        spans = span_ids(al, unit)
        keys = span_order_keys(mix_position(span_means(hits, spans), position_bias), spans)
        budget = math.floor(rate * al.n_tokens + 1e-9)
        labels.append(select_words(keys, al.word_n_tokens, budget, unit=unit))
    return labels


# -------------------------------------------------------------------------------- training


def labelled_rows(
    compressor: Compressor, docs: Sequence[Document], word_labels: Sequence[np.ndarray]
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Encoder rows ``(input_ids, token_type_ids, labels)``; labels are −100 outside the
    context (special tokens, question)."""
    rows, where = compressor.encoder_rows(docs)
    out = []
    for (ids, types), (d, s, e, off) in zip(rows, where, strict=True):
        tok = word_labels[d][docs[d].al.token_word[s:e]].astype(np.int64)
        if compressor.keep_index == 0:
            tok = 1 - tok
        lab = np.full(len(ids), -100, dtype=np.int64)
        lab[off : off + e - s] = tok
        out.append((ids, types, lab))
    return out


def train_supervised(
    compressor: Compressor,
    rows: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]],
    p: WarmstartParams,
    seed: int,
    bf16: bool | str = "auto",
) -> dict[str, float]:
    """Cross-entropy on keep/drop labels; returns first/last epoch loss and steps."""
    from taco.compress.encoder import collate, length_buckets

    model = compressor.model.train()
    training_attention(model, compressor.device)
    opt = adamw(model, p.lr, p.head_lr, 0.01)
    gen = torch.Generator().manual_seed(seed)
    started = time.perf_counter()
    losses: list[float] = []
    steps = 0
    # Length-bucketed batches (little padding), visited in a new random order each epoch.
    buckets = length_buckets([len(r[0]) for r in rows], p.batch_size * 128, p.batch_size)
    for epoch in range(p.epochs):
        order = torch.randperm(len(buckets), generator=gen).tolist()
        epoch_loss, n = 0.0, 0
        for i in order:
            batch = [rows[j] for j in buckets[i]]
            inputs = collate([(r[0], r[1]) for r in batch], compressor.pad_id, compressor.device)
            labels = torch.full_like(inputs["input_ids"], -100)
            for b, r in enumerate(batch):
                labels[b, : len(r[2])] = torch.from_numpy(r[2])
            with autocast(compressor.device, bf16):
                logits = compressor.logits([(r[0], r[1]) for r in batch])
            loss = torch.nn.functional.cross_entropy(
                logits.float().reshape(-1, 2), labels.reshape(-1), ignore_index=-100
            )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            epoch_loss += float(loss.detach())
            n += 1
            steps += 1
            if p.max_seconds is not None and time.perf_counter() - started > p.max_seconds:
                break
        losses.append(epoch_loss / max(n, 1))
        log.info("warmstart epoch %d: loss %.4f", epoch + 1, losses[-1])
        if p.max_seconds is not None and time.perf_counter() - started > p.max_seconds:
            log.info("warmstart: time budget of %.0f s reached", p.max_seconds)
            break
    model.eval()
    return {"loss_first_epoch": losses[0], "loss_last_epoch": losses[-1], "steps": steps}


def _write_report(params: Params, root: Path, record: dict[str, Any]) -> None:
    """``<data_dir>/reports/warmstart.json``: the record without params (DVC metrics)."""
    path = Layout.of(params, root).warmstart_report
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps({k: v for k, v in record.items() if k != "params"}, indent=2) + "\n")
    os.replace(tmp, path)


def run_warmstart(params: Params, root: Path = Path(".")) -> dict[str, Any]:
    """The stage: label, train, save to ``<data_dir>/models/warmstart`` (or record a skip)."""
    from taco.data.files import read_examples

    p: WarmstartParams = params.warmstart
    base = params.train.base_model
    layout = Layout.of(params, root)
    out = layout.warmstart_model
    skip = None
    if is_compressor(base):
        skip = "train.base_model is a compressor"
    elif p.labels == "none":
        skip = "warmstart.labels: none (RL starts from the fresh head)"
    if skip:
        record = {"skipped": True, "reason": skip, "base": base}
        log.info("warmstart skipped: %s", skip)
        save_model_atomic(None, out, record, WARMSTART_RECORD)
        _write_report(params, root, record)
        return record
    started = time.perf_counter()
    split = layout.split("train")
    targets: list[str] = []
    if p.labels == "overlap":  # rows with a teacher output, and that output
        from taco.rl.rows import load_rows

        pairs = load_rows(params, root)[: p.max_examples]
        examples = [r.example for r in pairs]
        targets = [f"{r.teacher} {r.example.question}" for r in pairs]
    else:
        examples = read_examples(split)[: p.max_examples]
    if not examples:
        raise TrainError(f"warmstart: no training rows in {split}")
    torch.manual_seed(params.base.seed)
    compressor = Compressor.from_pretrained(
        base,
        device=params.train.device,
        max_seq_len=params.train.max_seq_len,
        unit=params.train.unit,
    )
    docs = [compressor.prepare(ex.context, ex.question) for ex in examples]
    als = [d.al for d in docs]
    if p.labels == "self_information":
        from taco.llm.local import LocalLLM

        source = params.llm.model if params.llm.backend == "local" else None
        lm = LocalLLM.from_source(source, device=params.llm.device, dtype=params.llm.dtype)
        labels: list[np.ndarray | None] = list(
            self_information_labels(lm, als, p.rate, p.position_bias)
        )
        del lm
    elif p.labels == "overlap":
        unit = params.train.unit
        labels = list(overlap_labels(als, targets, p.rate, unit, p.overlap_position_bias))
    else:
        from taco.llm import build_llm
        from taco.tasks.registry import get_task

        goal = get_task(params.base.task, params).template.split("\n", 1)[0].rstrip(".").lower()
        labels = llm_labels(
            build_llm(params.llm),
            als,
            compressor.tokenizer,
            goal=goal,
            min_alignment=p.min_alignment,
            max_new_tokens=p.max_new_tokens,
        )
    keep = [i for i, lab in enumerate(labels) if lab is not None and docs[i].al.n_words]
    if not keep:
        raise StageFailed("warmstart: every label was filtered out (see warmstart.min_alignment)")
    label_seconds = time.perf_counter() - started
    rows = labelled_rows(compressor, [docs[i] for i in keep], [labels[i] for i in keep])
    stats = train_supervised(compressor, rows, p, params.base.seed, params.train.bf16)
    kept_share = float(np.mean([labels[i].mean() for i in keep]))  # type: ignore[union-attr]
    record = {
        "skipped": False,
        "labels": p.labels,
        "base": base or "embedded:all-MiniLM-L6-v2",
        "examples": len(examples),
        "labelled": len(keep),
        "filtered": len(examples) - len(keep),
        "label_keep_share": round(kept_share, 4),
        "label_seconds": round(label_seconds, 2),
        "seconds": round(time.perf_counter() - started, 2),
        **{k: round(v, 5) if isinstance(v, float) else v for k, v in stats.items()},
        "params": to_dict(p),
    }
    save_model_atomic(compressor, out, record, WARMSTART_RECORD)
    _write_report(params, root, record)
    log.info("warmstart: %s", {k: v for k, v in record.items() if k != "params"})
    return record


def run(params: Params, root: Path = Path(".")) -> dict[str, Any]:
    """The ``warmstart`` stage; returns whether it was skipped, what was labelled, the loss."""
    record = run_warmstart(params, root)
    keys = ("skipped", "labelled", "filtered", "loss_first_epoch", "loss_last_epoch", "seconds")
    return {k: record[k] for k in keys if k in record}
