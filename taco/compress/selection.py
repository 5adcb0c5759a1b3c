"""Token budgets and word selection: pure functions over alignment arrays, plus counters."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

import numpy as np

from taco.compress.text import Alignment, codepoints, no_space
from taco.errors import ArgumentError, ArgumentTypeError


class TokenCounter(Protocol):
    """Counts tokens of a text; ``count_many`` (optional) counts a batch faster."""

    def __call__(self, text: str) -> int: ...


class HFTokenCounter:
    """Token counter from any Hugging Face tokenizer (e.g. the target LLM's)."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer

    def __call__(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])

    def count_many(self, texts: Sequence[str]) -> list[int]:
        if not texts:
            return []
        ids = self.tokenizer(list(texts), add_special_tokens=False, verbose=False)["input_ids"]
        return [len(x) for x in ids]


def tiktoken_counter(encoding: str = "cl100k_base") -> TokenCounter:
    """A tiktoken counter (GPT-3.5/4 tokens); its BPE file must be in ``TIKTOKEN_CACHE_DIR``."""
    try:
        import tiktoken
    except ImportError:
        raise ImportError("tiktoken is not installed: pip install tiktoken") from None
    enc = tiktoken.get_encoding(encoding)

    class _Counter:
        def __call__(self, text: str) -> int:
            return len(enc.encode_ordinary(text))

        def count_many(self, texts: Sequence[str]) -> list[int]:
            return [len(x) for x in enc.encode_ordinary_batch(list(texts))]

    return _Counter()


def count_many(counter: TokenCounter, texts: Sequence[str]) -> list[int]:
    """Counts for many texts, through ``count_many`` when the counter has it."""
    many = getattr(counter, "count_many", None)
    return list(many(texts)) if callable(many) else [int(counter(t)) for t in texts]


def check_budget_args(rate: Any, target_tokens: Any) -> None:
    """Raise ValueError/TypeError unless exactly one valid budget is given."""
    if rate is not None and target_tokens is not None:
        raise ArgumentError("give either rate or target_tokens, not both")
    if rate is None and target_tokens is None:
        raise ArgumentError(
            "give rate (fraction of tokens kept, in (0, 1]) or target_tokens (>= 0)"
        )
    if rate is not None:
        if isinstance(rate, bool) or not isinstance(rate, int | float):
            raise ArgumentTypeError(f"rate must be a number in (0, 1], got {type(rate).__name__}")
        if not (0.0 < rate <= 1.0) or math.isnan(rate):
            raise ArgumentError(f"rate must be in (0, 1], got {rate}")
    if target_tokens is not None:
        if isinstance(target_tokens, bool) or not isinstance(target_tokens, int | np.integer):
            raise ArgumentTypeError(
                f"target_tokens must be an integer >= 0, got {type(target_tokens).__name__}"
            )
        if target_tokens < 0:
            raise ArgumentError(f"target_tokens must be an integer >= 0, got {target_tokens}")


def token_budget(origin_tokens: int, rate: float | None, target_tokens: int | None) -> int:
    """Tokens that may be kept: ``floor(rate * origin)`` or ``min(target, origin)``."""
    if target_tokens is not None:
        return min(int(target_tokens), origin_tokens)
    assert rate is not None
    return min(origin_tokens, math.floor(rate * origin_tokens + 1e-9))


def select_words(
    scores: np.ndarray,
    costs: np.ndarray,
    budget: int,
    *,
    unit: str = "word",
    groups: np.ndarray | None = None,
) -> np.ndarray:
    """Keep the highest-scoring words whose total cost fits ``budget`` (boolean mask).

    Words are taken in descending score order (ties: earlier word first); once the next
    word does not fit, the remaining budget is filled with the best-ranked words that still
    fit, so the shortfall is smaller than any word left out. For span units (``sentence``,
    ``line``; scores from ``span_order_keys``) there is no fill: the selection is exactly a prefix
    of the ranking — whole spans, then the start of the next one. ``groups`` (optional, from
    ``keep_together``: a non-decreasing group id per word, the words of a group contiguous)
    makes each group one item, kept whole or not at all: its cost the sum of its words',
    its rank its best word's.
    """
    if groups is not None and groups.shape[0] and int(groups[-1]) + 1 < groups.shape[0]:
        first = np.flatnonzero(np.diff(groups, prepend=-1))
        keep_groups = select_words(
            np.maximum.reduceat(scores, first), np.add.reduceat(costs, first), budget, unit=unit
        )
        return keep_groups[groups]
    keep = np.zeros(scores.shape[0], dtype=bool)
    if scores.shape[0] == 0 or budget <= 0:
        return keep
    order = np.argsort(-scores, kind="stable")
    c = costs[order]
    cum = np.cumsum(c)
    n = int(np.searchsorted(cum, budget, side="right"))
    keep[order[:n]] = True
    if unit != "word":
        return keep
    remaining = budget - (int(cum[n - 1]) if n else 0)
    rest, rest_cost = order[n:], c[n:]
    pos = 0
    while remaining > 0 and pos < rest.shape[0]:
        fits = np.flatnonzero(rest_cost[pos:] <= remaining)
        if fits.size == 0:
            break
        k = pos + int(fits[0])
        keep[rest[k]] = True
        remaining -= int(rest_cost[k])
        pos = k + 1
    return keep


def span_means(scores: np.ndarray, spans: np.ndarray) -> np.ndarray:
    """Mean of the word ``scores`` in each span (``spans`` maps words to 0, 1, ...)."""
    n_spans = int(spans[-1]) + 1 if spans.shape[0] else 0
    return np.bincount(spans, weights=scores, minlength=n_spans) / np.maximum(
        np.bincount(spans, minlength=n_spans), 1
    )


def item_starts(al: Alignment, spans: np.ndarray) -> np.ndarray:
    """Where each item (word or span; ``spans`` maps words to 0, 1, ...) starts, as a share
    of the text's characters before it: 0 for the first, towards 1 for the last."""
    n_items = int(spans[-1]) + 1 if spans.shape[0] else 0
    first = np.searchsorted(spans, np.arange(n_items))  # spans number words in reading order
    return al.word_start[first] / max(len(al.text), 1)


def with_position_prior(p: np.ndarray, starts: np.ndarray, prior: float) -> np.ndarray:
    """Item ranking scores with a position prior β: ``logit(p) - β·start`` (``p`` = mean
    keep-probability of each item, ``starts`` from ``item_starts``); ``p`` itself when β = 0.
    A large β ranks by position — truncation — and the encoder's scores reorder items only
    where they outweigh it; the training policy samples in the same units."""
    if prior == 0:
        return p
    q = np.clip(p.astype(np.float64), 1e-6, 1 - 1e-6)
    return np.log(q) - np.log1p(-q) - prior * starts


def span_order_keys(span_scores: np.ndarray, spans: np.ndarray) -> np.ndarray:
    """Ranking keys that make ``select_words`` pick whole spans: spans by their score (best
    first, ties: earlier span), the words of a span in reading order — so the budget takes
    the best spans whole and the prefix of the next one. ``spans`` maps each word to its span
    (``taco.compress.text.span_ids``); ``span_scores`` has one score per span."""
    n = spans.shape[0]
    rank = np.empty(span_scores.shape[0], dtype=np.int64)
    rank[np.argsort(-span_scores, kind="stable")] = np.arange(span_scores.shape[0])
    return -(rank[spans] * n + np.arange(n)).astype(np.float64)


def layout_token(token: str) -> bool:
    """Is a force token layout rather than text: line breaks only (``"\\n"``, ``"\\r\\n"``,
    ``"\\n\\n"``)? Forcing one keeps the text's line breaks (``render(keep_newlines)``)."""
    return bool(token) and not token.strip("\r\n")


def force_occurrences(al: Alignment, force_tokens: Iterable[str]) -> list[tuple[int, int]]:
    """Word ranges ``(first, last)`` (inclusive) of the occurrences of each force token.

    An occurrence counts where it starts and ends on word boundaries (a force token may span
    several words: ``"Answer:"``, a URL, a file path); inside writing without spaces, where
    the tokenizer's pieces need not fall on the token's edges, it takes the words it
    touches. Layout tokens (``layout_token``) have no occurrences. Occurrences may overlap.
    """
    out: list[tuple[int, int]] = []
    if al.n_words == 0:
        return out
    text, n = al.text, len(al.text)
    ws, we = al.word_start, al.word_end
    for tok in force_tokens:
        if not tok.strip():
            continue  # whitespace force tokens ("\n") are layout: see render(keep_newlines)
        start = 0
        while (i := text.find(tok, start)) >= 0:
            start = i + 1
            end = i + len(tok)
            a = int(np.searchsorted(we, i, side="right"))  # first word ending after i
            b = int(np.searchsorted(ws, end, side="left")) - 1  # last word starting before end
            if a > b or ws[a] > i or we[b] < end:
                continue  # starts or ends in a gap (the token has outer whitespace)
            inner = ws[a] < i and no_space(codepoints(text[i - 1 : i + 1])).all()
            if ws[a] != i and not inner:
                continue
            inner = we[b] > end and end < n and no_space(codepoints(text[end - 1 : end + 1])).all()
            if we[b] != end and not inner:
                continue
            out.append((a, b))
    return out


def forced_words(al: Alignment, force_tokens: Iterable[str], keep_digits: bool) -> np.ndarray:
    """Words that must be kept (boolean mask): the words of every occurrence of a force token
    (``force_occurrences``), and with ``keep_digits`` every word containing a digit (any
    Unicode decimal digit; a number is one word, ``taco.compress.text.NUMBER``)."""
    forced = np.zeros(al.n_words, dtype=bool)
    if al.n_words == 0:
        return forced
    for a, b in force_occurrences(al, force_tokens):
        forced[a : b + 1] = True
    if keep_digits:
        cps = codepoints(al.text)
        uniq, inverse = np.unique(cps, return_inverse=True)
        digit = np.array([chr(c).isdecimal() for c in uniq.tolist()], dtype=bool)[inverse]
        cum = np.zeros(len(al.text) + 1, dtype=np.int64)
        np.cumsum(digit, out=cum[1:])
        forced |= cum[al.word_end] - cum[al.word_start] > 0
    return forced


def keep_together(al: Alignment, force_tokens: Iterable[str]) -> np.ndarray:
    """Group id per word (0, 1, ... in reading order) for ``select_words(groups=)``: the
    words of one force-token occurrence (overlapping ones merged) share an id, so a string
    the user protects is kept whole or not at all; every other word is a group of its own."""
    glue = np.zeros(al.n_words, dtype=bool)  # word i stays with word i - 1
    for a, b in force_occurrences(al, force_tokens):
        glue[a + 1 : b + 1] = True
    return np.cumsum(~glue) - 1


WORD_SCORE_MODES = ("mean", "first")  # LLMLingua-2's token_to_word


def word_scores(token_probs: np.ndarray, al: Alignment, mode: str = "mean") -> np.ndarray:
    """Word keep-probability from its sub-tokens' (``token_probs``: shape (n_tokens,)):
    their mean (LLMLingua-2's default rule) or (``first``) the first one's; shape
    (n_words,). Raises ValueError for another ``mode``."""
    if mode not in WORD_SCORE_MODES:
        raise ValueError(f"word score mode must be one of {WORD_SCORE_MODES}, got {mode!r}")
    if al.n_words == 0:
        return np.zeros(0, dtype=np.float64)
    probs = token_probs.astype(np.float64)
    if mode == "first":
        return probs[al.word_first_token]
    return np.add.reduceat(probs, al.word_first_token) / al.word_n_tokens


def drop_repeated_forced(al: Alignment, keep: np.ndarray, forced: np.ndarray) -> np.ndarray:
    """LLMLingua-2's ``drop_consecutive``: ``keep`` (boolean, per word) without every kept
    forced word whose text equals the kept word just before it (``. .`` → ``.``)."""
    out = keep.copy()
    prev = None
    for i in np.flatnonzero(keep).tolist():
        word = al.text[al.word_start[i] : al.word_end[i]]
        if forced[i] and word == prev:
            out[i] = False
            continue
        prev = word
    return out
