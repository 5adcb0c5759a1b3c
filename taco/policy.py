"""The training policy: encoder keep-probabilities → sampled keep/drop masks → compressed text.

Inputs are built exactly as the inference ``Compressor`` builds them
(``Compressor.prepare(text, question)``: the encoder reads ``question [SEP] context`` chunks of
at most one window each), and the compressed text is rebuilt by ``taco.text.render``, the code
inference uses. A prompt longer than one window is encoded chunk by chunk and its chunks'
context tokens are concatenated, so one prompt is one sequence of actions and one reward.

**Action rule** (``level``):

- ``word`` (default): one Bernoulli action per word with p(keep) = mean of its sub-token
  p(keep). This is exactly the score inference ranks words by (``word_scores``), so what
  training makes likely is what inference keeps; a word's probability does not shrink with
  its number of sub-tokens, and no gradient goes to sub-token decisions that had no effect.
- ``token`` (the paper's rule): one action per sub-token; a word is kept iff all its
  sub-tokens are kept.

Forced words (``force_tokens``, ``keep_digits``) are always kept and are not actions; the
question, special tokens and padding are never actions. One encoder forward per prompt
serves all ``k`` samples.

**Sampling** (``sample`` vs ``sample_budget``): independent Bernoulli keeps (the paper; the
kept share varies per sample and the reward's rate window has to police it), or exactly the
inference procedure on Gumbel-perturbed word scores at a fixed token budget (every sample
has the target rate, so the reward measures only *which* words were kept).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np
import torch

from taco.compressor import (
    Compressor,
    Document,
    fit_budget,
    forced_words,
    length_buckets,
    select_words,
)
from taco.reinforce import plackett_luce_log_prob, token_log_probs, word_log_probs
from taco.selection import span_order_keys
from taco.text import render, span_ids

Level = Literal["word", "token"]
_PAD_LOGP = math.log(0.5)  # finite filler for padded positions (always masked out)


@dataclasses.dataclass(frozen=True, eq=False)
class Encoded:
    """Per prompt and action unit (word or token): log p(keep), log p(drop) ``(B, T)``
    (with autograd), the action mask ``(B, T)`` and each prompt's forced words."""

    docs: list[Document]
    level: Level
    logp_keep: torch.Tensor
    logp_drop: torch.Tensor
    mask: torch.Tensor
    forced: list[np.ndarray]
    budget: list[tuple[int, np.ndarray]]  # Compressor.budget_costs: (length, word costs)
    count: Callable[[str], int]  # Compressor.count_tokens: a text's length in those units

    def n_units(self, b: int) -> int:
        al = self.docs[b].al
        return al.n_words if self.level == "word" else al.n_tokens


@dataclasses.dataclass(frozen=True, eq=False)
class Samples:
    """``k`` sampled compressions per prompt: actions ``(B, k, T)``, word masks, texts and
    the share of encoder tokens kept."""

    actions: torch.Tensor
    keep_words: list[list[np.ndarray]]
    texts: list[list[str]]
    kept_share: list[list[float]]


def prepare(
    compressor: Compressor, contexts: Sequence[str], questions: Sequence[str] | None = None
) -> list[Document]:
    """Documents exactly as inference builds them (question-aware when a question is given)."""
    qs = questions if questions is not None else [""] * len(contexts)
    return [compressor.prepare(c, q) for c, q in zip(contexts, qs, strict=True)]


def token_logits(compressor: Compressor, docs: Sequence[Document]) -> list[torch.Tensor]:
    """Logits ``(n_tokens, 2)`` of every context token of each document, chunks
    concatenated; length-bucketed encoder batches, autograd kept."""
    rows, where = compressor.encoder_rows(docs)
    pieces: list[torch.Tensor | None] = [None] * len(rows)
    lengths = [len(r[0]) for r in rows]
    for batch in length_buckets(lengths, compressor.batch_tokens, compressor.batch_rows):
        logits = compressor.logits([rows[i] for i in batch])
        for j, i in enumerate(batch):
            _, s, e, off = where[i]
            pieces[i] = logits[j, off : off + e - s]
    per_doc: list[list[torch.Tensor]] = [[] for _ in docs]
    for i, (d, *_rest) in enumerate(where):
        piece = pieces[i]
        assert piece is not None
        per_doc[d].append(piece)
    empty = torch.zeros((0, 2), device=compressor.device)
    return [torch.cat(p, 0) if p else empty for p in per_doc]


def _pad(seqs: Sequence[torch.Tensor], value: float, device: torch.device) -> torch.Tensor:
    width = max((s.shape[0] for s in seqs), default=0)
    out = torch.full((len(seqs), width), value, dtype=torch.float32, device=device)
    rows = [torch.nn.functional.pad(s.float(), (0, width - s.shape[0]), value=value) for s in seqs]
    return torch.stack(rows) if rows else out


def encode(
    compressor: Compressor,
    docs: Sequence[Document],
    *,
    level: Level = "word",
    force_tokens: Sequence[str] = ("\n",),
    keep_digits: bool = False,
) -> Encoded:
    """One encoder pass over all chunks of ``docs`` → per-unit log-probs and action mask."""
    if level not in ("word", "token"):
        raise ValueError(f"level must be 'word' or 'token', got {level!r}")
    device = compressor.device
    logits = token_logits(compressor, docs)
    keeps, drops, masks, forced_all = [], [], [], []
    for doc, lg in zip(docs, logits, strict=True):
        al = doc.al
        forced = forced_words(al, force_tokens, keep_digits)
        lk, ld = token_log_probs(lg, compressor.keep_index)
        if level == "word" and al.n_words:
            tw = torch.as_tensor(al.token_word, device=device)
            lk, ld = word_log_probs(lk, ld, tw, al.n_words)
            fixed = forced
        else:
            fixed = forced[al.token_word] if al.n_words else np.zeros(al.n_tokens, bool)
        keeps.append(lk)
        drops.append(ld)
        masks.append(torch.as_tensor(~fixed, device=device))
        forced_all.append(forced)
    logp_keep = _pad(keeps, _PAD_LOGP, device)
    logp_drop = _pad(drops, _PAD_LOGP, device)
    width = logp_keep.shape[1]
    mask = torch.zeros((len(docs), width), dtype=torch.bool, device=device)
    for b, m in enumerate(masks):
        mask[b, : m.shape[0]] = m
    budget = [compressor.budget_costs(d) for d in docs]
    return Encoded(
        list(docs), level, logp_keep, logp_drop, mask, forced_all, budget, compressor.count_tokens
    )


def sample(enc: Encoded, k: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """``k`` Bernoulli action draws per prompt ``(B, k, T)``; non-action positions are 1
    for forced units and 0 for padding."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    p = enc.logp_keep.detach().exp().clamp(0.0, 1.0)
    draws = torch.bernoulli(p.unsqueeze(1).expand(-1, k, -1).contiguous(), generator=generator)
    fixed = torch.zeros_like(p)
    for b in range(len(enc.docs)):
        n = enc.n_units(b)
        fixed[b, :n] = 1.0  # real but not an action → forced keep
    return torch.where(enc.mask.unsqueeze(1), draws, fixed.unsqueeze(1)).to(torch.uint8)


def sample_budget(
    enc: Encoded,
    k: int,
    rate: float,
    generator: torch.Generator | None = None,
    unit: str = "word",
    keep_newlines: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``k`` compressions per prompt at a fixed token budget, as inference selects words.

    Each sample perturbs the item scores (logits of p(keep)) with Gumbel noise and keeps the
    best items until ``rate`` of the prompt's tokens is used (forced words first) —
    ``select_words`` and ``fit_budget``, the inference rule, on noisy scores; tokens are the
    compressor's ``token_counter``'s (training sets the reward LLM's) or the encoder's. That
    is sampling without replacement in a Plackett–Luce model, so log π = the log-probability
    of picking the kept items in their perturbed order. Items are words, or with ``unit``
    sentence/line whole spans scored by the mean p(keep) of their words (inference's span
    rule; the last span picked may be kept only in part). Returns actions ``(B, k, T)`` and
    log π ``(B, k)`` (with autograd). Word-level encodings only.
    """
    if enc.level != "word":
        raise ValueError("budget sampling needs word-level actions (train.level: word)")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    device = enc.logp_keep.device
    actions = torch.zeros((len(enc.docs), k, enc.mask.shape[1]), dtype=torch.uint8, device=device)
    log_probs = []
    for b, doc in enumerate(enc.docs):
        al, n = doc.al, doc.al.n_words
        spans = span_ids(al, unit)
        n_items = int(spans[-1]) + 1 if n else 0
        action = enc.mask[b, :n]
        if unit == "word":
            scores, mask = enc.logp_keep[b, :n] - enc.logp_drop[b, :n], action
        else:
            st = torch.as_tensor(spans, device=device)
            lk, ld = word_log_probs(enc.logp_keep[b, :n], enc.logp_drop[b, :n], st, n_items)
            scores = lk - ld
            mask = torch.zeros(n_items, dtype=torch.bool, device=device)
            mask = mask.index_fill(0, st[action], True)  # spans with an action word
        action_np = action.cpu().numpy()
        idx = np.flatnonzero(action_np)
        origin, costs = enc.budget[b]
        total = math.floor(rate * origin + 1e-9)
        forced = np.asarray(enc.forced[b], dtype=bool)
        u = torch.rand((k, n_items), generator=generator, device=device).clamp(1e-12, 1 - 1e-7)
        noisy = (scores.detach() - torch.log(-torch.log(u))).cpu().numpy()
        row = []
        for j in range(k):
            keys = span_order_keys(noisy[j], spans)
            select = functools.partial(
                _budget_keep, forced=forced, idx=idx, keys=keys, costs=costs, unit=unit
            )
            # the rebuilt text's real count fits; if trimmed, the last picks go first
            low_first = idx[np.argsort(keys[idx], kind="stable")]
            keep, _, _ = fit_budget(al, select, low_first, costs, total, enc.count, keep_newlines)
            chosen = np.flatnonzero(keep & action_np)
            picked = np.unique(spans[chosen])
            order = picked[np.argsort(-noisy[j, picked], kind="stable")]
            actions[b, j, :n] = torch.as_tensor(keep, device=device)
            row.append(plackett_luce_log_prob(scores, torch.as_tensor(order, device=device), mask))
        log_probs.append(torch.stack(row) if row else torch.zeros(k, device=device))
    return actions, torch.stack(log_probs)


def _budget_keep(
    target: int,
    *,
    forced: np.ndarray,
    idx: np.ndarray,
    keys: np.ndarray,
    costs: np.ndarray,
    unit: str,
) -> np.ndarray:
    """Forced words plus the action words ``idx`` that ``select_words`` keeps by ``keys``
    within ``target`` tokens (forced words' cost first)."""
    keep = forced.copy()
    room = target - int(costs[forced].sum())
    keep[idx[select_words(keys[idx], costs[idx], room, unit=unit)]] = True
    return keep


def word_masks(enc: Encoded, actions: torch.Tensor) -> list[list[np.ndarray]]:
    """Kept-word masks per prompt and sample (forced words always kept)."""
    acts = actions.bool().cpu().numpy()
    out: list[list[np.ndarray]] = []
    for b, doc in enumerate(enc.docs):
        al = doc.al
        row = []
        for j in range(acts.shape[1]):
            a = acts[b, j, : enc.n_units(b)]
            if al.n_words == 0:
                keep = np.zeros(0, dtype=bool)
            elif enc.level == "word":
                keep = a.copy()
            else:
                keep = np.logical_and.reduceat(a, al.word_first_token)
            row.append(keep | enc.forced[b])
        out.append(row)
    return out


def build(
    enc: Encoded,
    actions: torch.Tensor,
    *,
    keep_newlines: bool = True,
) -> Samples:
    """Compressed texts of sampled actions, rebuilt with ``taco.text.render``."""
    masks = word_masks(enc, actions)
    texts, shares = [], []
    for doc, row in zip(enc.docs, masks, strict=True):
        al = doc.al
        texts.append([render(al, keep, keep_newlines=keep_newlines) for keep in row])
        total = max(al.n_tokens, 1)
        shares.append([float(al.word_n_tokens[keep].sum()) / total for keep in row])
    return Samples(actions, masks, texts, shares)
