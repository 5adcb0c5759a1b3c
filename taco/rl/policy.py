"""The training policy: encoder keep-probabilities → sampled keep/drop masks → compressed text
(docs/algorithm.md §3 actions, §4 sampling).

Inputs are built exactly as the inference ``Compressor`` builds them
(``Compressor.prepare(text, question)``: the encoder reads ``question [SEP] context`` chunks of
at most one window each), and the compressed text is rebuilt by
``taco.compress.text.render``, the code inference uses. A prompt longer than one window is
encoded chunk by chunk and its chunks' context tokens are concatenated, so one prompt is one
sequence of actions and one reward.

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

from taco.compress.compressor import Compressor, Document, fit_budget
from taco.compress.encoder import length_buckets
from taco.compress.selection import forced_words, item_starts, select_words, span_order_keys
from taco.compress.text import render, span_ids
from taco.rl.reinforce import plackett_luce_log_probs, token_log_probs, word_log_probs

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


def _scatter_pad(flat: torch.Tensor, sizes: Sequence[int], fill: float) -> torch.Tensor:
    """Rows of ``flat`` (``sizes[b]`` values each, one after the other) as a ``(B, width)``
    tensor padded with ``fill``; one copy kernel, autograd kept."""
    width = max(sizes, default=0)
    dest = np.concatenate([b * width + np.arange(n) for b, n in enumerate(sizes)] or [[]])
    out = torch.full((len(sizes) * width,), fill, dtype=torch.float32, device=flat.device)
    idx = torch.as_tensor(dest.astype(np.int64), device=flat.device)
    return out.index_copy(0, idx, flat.float()).view(len(sizes), width)


def _group_log_probs(
    logp_keep: torch.Tensor, logp_drop: torch.Tensor, groups: Sequence[np.ndarray]
) -> tuple[torch.Tensor, torch.Tensor]:
    """``word_log_probs`` of all prompts in one call: ``logp_*`` hold every prompt's members
    one prompt after the other, ``groups[b]`` maps prompt b's members to its groups (words of
    tokens, spans of words); groups are numbered globally by offsetting each prompt's."""
    sizes = [int(g.max()) + 1 if len(g) else 0 for g in groups]
    offsets = np.cumsum([0, *sizes[:-1]])
    ids = np.concatenate([g + o for g, o in zip(groups, offsets, strict=True)] or [[]])
    index = torch.as_tensor(ids.astype(np.int64), device=logp_keep.device)
    return word_log_probs(logp_keep, logp_drop, index, int(sum(sizes)))


def encode(
    compressor: Compressor,
    docs: Sequence[Document],
    *,
    level: Level = "word",
    force_tokens: Sequence[str] = ("\n",),
    keep_digits: bool = False,
) -> Encoded:
    """One encoder pass over all chunks of ``docs`` → per-unit log-probs and action mask
    (batched over prompts: a handful of kernels, whatever the number of prompts)."""
    if level not in ("word", "token"):
        raise ValueError(f"level must be 'word' or 'token', got {level!r}")
    device = compressor.device
    logits = token_logits(compressor, docs)
    flat = torch.cat(logits, 0) if logits else torch.zeros((0, 2), device=device)
    lk, ld = token_log_probs(flat, compressor.keep_index)
    forced_all = [forced_words(d.al, force_tokens, keep_digits) for d in docs]
    if level == "word":
        lk, ld = _group_log_probs(lk, ld, [d.al.token_word for d in docs])
        sizes = [d.al.n_words for d in docs]
        fixed = forced_all
    else:
        sizes = [d.al.n_tokens for d in docs]
        fixed = [f[d.al.token_word] for f, d in zip(forced_all, docs, strict=True)]
    logp_keep = _scatter_pad(lk, sizes, _PAD_LOGP)
    logp_drop = _scatter_pad(ld, sizes, _PAD_LOGP)
    mask = np.zeros(logp_keep.shape, dtype=bool)
    for b, f in enumerate(fixed):
        mask[b, : len(f)] = ~f
    budget = [compressor.budget_costs(d) for d in docs]
    return Encoded(
        list(docs),
        level,
        logp_keep,
        logp_drop,
        torch.as_tensor(mask, device=device),
        forced_all,
        budget,
        compressor.count_tokens,
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
    temperature: float = 1.0,
    position_prior: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``k`` compressions per prompt at a fixed token budget, as inference selects words.

    Each sample perturbs the item scores (logits of p(keep)) with Gumbel noise and keeps the
    best items until ``rate`` of the prompt's tokens is used (forced words first) —
    ``select_words`` and ``fit_budget``, the inference rule, on noisy scores; tokens are the
    compressor's ``token_counter``'s (training sets the reward LLM's) or the encoder's. That
    is sampling without replacement in a Plackett–Luce model, so log π = the log-probability
    of picking the kept items in their perturbed order. Items are words, or with ``unit``
    sentence/line whole spans scored by the mean p(keep) of their words (inference's span
    rule; the last span picked may be kept only in part). ``temperature`` τ divides the
    scores before the noise (and in log π): τ > 1 explores beyond what inference keeps, whose
    top-k does not depend on τ. ``position_prior`` β subtracts β·(where the item starts, as
    a share of the text) from its score (logit of p(keep)), as inference ranks with the
    compressor's prior (``with_position_prior``). Returns actions ``(B, k, T)`` and log π
    ``(B, k)`` (with autograd). Word-level encodings only.
    """
    if enc.level != "word":
        raise ValueError("budget sampling needs word-level actions (train.level: word)")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    device = enc.logp_keep.device
    n_docs, width = enc.mask.shape
    mask_np = enc.mask.cpu().numpy()
    words = [doc.al.n_words for doc in enc.docs]
    spans = [span_ids(doc.al, unit) for doc in enc.docs]
    n_items = [int(sp[-1]) + 1 if n else 0 for sp, n in zip(spans, words, strict=True)]
    if unit == "word":
        scores = enc.logp_keep - enc.logp_drop
        masks = mask_np
    else:  # spans scored by the mean p(keep) of their words, as inference ranks them
        rows = torch.as_tensor(np.repeat(np.arange(n_docs), words), device=device)
        cols = np.concatenate([np.arange(n) for n in words] or [[]]).astype(np.int64)
        cols = torch.as_tensor(cols, device=device)
        lk, ld = _group_log_probs(enc.logp_keep[rows, cols], enc.logp_drop[rows, cols], spans)
        scores = _scatter_pad(lk - ld, n_items, 0.0)
        masks = np.zeros(scores.shape, dtype=bool)
        for b, (sp, n) in enumerate(zip(spans, words, strict=True)):
            masks[b, sp[mask_np[b, :n]]] = True  # spans with an action word
    if position_prior:
        starts = np.zeros(scores.shape, dtype=np.float32)
        for b, (doc, sp) in enumerate(zip(enc.docs, spans, strict=True)):
            starts[b, : n_items[b]] = item_starts(doc.al, sp)
        scores = scores - position_prior * torch.as_tensor(starts, device=device)
    scores = scores / temperature
    # Gumbel noise per prompt (the generator's stream as drawn prompt by prompt), one copy
    noise = torch.zeros((n_docs, k, scores.shape[1]), device=device)
    for b, n in enumerate(n_items):
        u = torch.rand((k, n), generator=generator, device=device).clamp(1e-12, 1 - 1e-7)
        noise[b, :, :n] = -torch.log(-torch.log(u))
    noisy_all = (scores.detach()[:, None, :] + noise).cpu().numpy()
    actions = np.zeros((n_docs, k, width), dtype=np.uint8)
    orders: list[np.ndarray] = []
    for b, doc in enumerate(enc.docs):
        al, n, sp = doc.al, words[b], spans[b]
        action_np = mask_np[b, :n]
        idx = np.flatnonzero(action_np)
        origin, costs = enc.budget[b]
        total = math.floor(rate * origin + 1e-9)
        forced = np.asarray(enc.forced[b], dtype=bool)
        for j in range(k):
            noisy = noisy_all[b, j, : n_items[b]]
            keys = span_order_keys(noisy, sp)
            select = functools.partial(
                _budget_keep, forced=forced, idx=idx, keys=keys, costs=costs, unit=unit
            )
            # the rebuilt text's real count fits; if trimmed, the last picks go first
            low_first = idx[np.argsort(keys[idx], kind="stable")]
            keep, _, _ = fit_budget(al, select, low_first, costs, total, enc.count, keep_newlines)
            picked = np.unique(sp[np.flatnonzero(keep & action_np)])
            orders.append(picked[np.argsort(-noisy[picked], kind="stable")])
            actions[b, j, :n] = keep
    # log π of all B·k samples in one batched computation (no per-sample host syncs)
    picks = np.zeros((len(orders), max((len(o) for o in orders), default=0)), dtype=np.int64)
    for r, o in enumerate(orders):
        picks[r, : len(o)] = o
    log_probs = plackett_luce_log_probs(
        scores.repeat_interleave(k, 0),
        torch.as_tensor(picks, device=device),
        torch.as_tensor([len(o) for o in orders], device=device),
        torch.as_tensor(masks, device=device).repeat_interleave(k, 0),
    )
    return torch.as_tensor(actions, device=device), log_probs.view(n_docs, k)


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
    """Compressed texts of sampled actions, rebuilt with ``taco.compress.text.render``."""
    masks = word_masks(enc, actions)
    texts, shares = [], []
    for doc, row in zip(enc.docs, masks, strict=True):
        al = doc.al
        texts.append([render(al, keep, keep_newlines=keep_newlines) for keep in row])
        total = max(al.n_tokens, 1)
        shares.append([float(al.word_n_tokens[keep].sum()) / total for keep in row])
    return Samples(actions, masks, texts, shares)
