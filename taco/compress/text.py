"""Words, chunks and text rebuilding: sub-token → word alignment with character offsets.

A *word* is what the encoder's own tokenizer calls a word (its pre-tokenizer's
``word_ids``), with punctuation-only tokens split off as words of their own, so WordPiece
(BERT) and SentencePiece (XLM-R) tokenizers get the same kind of units LLMLingua-2 uses,
without ever looking at the model's name. Every word is a character span of the original
text, so the compressed text is rebuilt from the original bytes (case, unicode, punctuation),
with line breaks and indentation kept on kept lines.
"""

from __future__ import annotations

import dataclasses
import re
import unicodedata
from typing import Any

import numpy as np

SENTENCE_END = frozenset(".!?。！？;")
UNITS = ("word", "sentence", "line")
_INDENT = re.compile(r"[ \t]*")


@dataclasses.dataclass(frozen=True, eq=False)
class Alignment:
    """One text tokenized once, with its words as character spans.

    Arrays (numpy): ``token_ids``/``token_start``/``token_end``/``token_word`` per token;
    ``word_start``/``word_end`` (characters), ``word_first_token``/``word_n_tokens`` per word;
    ``sentence_cut`` per token: True when a chunk may end after it (sentence end or line
    break, and the next token starts a word).
    """

    text: str
    token_ids: np.ndarray
    token_start: np.ndarray
    token_end: np.ndarray
    token_word: np.ndarray
    word_start: np.ndarray
    word_end: np.ndarray
    word_first_token: np.ndarray
    word_n_tokens: np.ndarray
    sentence_cut: np.ndarray
    newline_cum: np.ndarray  # newline_cum[i] = number of "\n" in text[:i]

    @property
    def n_tokens(self) -> int:
        return int(self.token_ids.shape[0])

    @property
    def n_words(self) -> int:
        return int(self.word_start.shape[0])

    def words(self) -> list[str]:
        """The words' original text, in order."""
        t = self.text
        return [
            t[s:e] for s, e in zip(self.word_start.tolist(), self.word_end.tolist(), strict=True)
        ]


def _codepoints(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)


def _char_classes(cps: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per character: is punctuation/symbol, is whitespace, is a sentence end."""
    uniq, inverse = np.unique(cps, return_inverse=True)
    chars = [chr(c) for c in uniq.tolist()]
    punct = np.array([unicodedata.category(c)[0] in "PS" for c in chars], dtype=bool)
    space = np.array([c.isspace() for c in chars], dtype=bool)
    end = np.array([c in SENTENCE_END for c in chars], dtype=bool)
    return punct[inverse], space[inverse], end[inverse]


def _cumsum0(mask: np.ndarray) -> np.ndarray:
    out = np.zeros(mask.shape[0] + 1, dtype=np.int64)
    np.cumsum(mask, out=out[1:])
    return out


def align(text: str, tokenizer: Any) -> Alignment:
    """Tokenize ``text`` once (no special tokens) and group its tokens into words."""
    if not getattr(tokenizer, "is_fast", True) and not hasattr(tokenizer, "backend_tokenizer"):
        raise TypeError("the tokenizer must be a fast (Rust) tokenizer that returns offsets")
    enc = tokenizer(
        text,
        add_special_tokens=False,
        return_offsets_mapping=True,
        return_attention_mask=False,
        return_token_type_ids=False,
        verbose=False,
    )
    ids = np.asarray(enc["input_ids"], dtype=np.int64)
    offsets = np.asarray(enc["offset_mapping"], dtype=np.int64).reshape(-1, 2)
    word_ids = enc.word_ids()
    cps = _codepoints(text)
    punct_c, space_c, end_c = _char_classes(cps) if len(text) else (np.zeros(0, bool),) * 3
    newline_cum = _cumsum0(cps == 10)

    # Tokens that cover no visible character of their own (e.g. a bare SentencePiece "▁",
    # reported with the next token's offsets) stay encoder inputs and join the next word.
    start, end = offsets[:, 0], offsets[:, 1]
    space_cum = _cumsum0(space_c)
    width = end - start
    visible = width > space_cum[end] - space_cum[start]
    visible[:-1] &= ~((start[:-1] == start[1:]) & (end[:-1] <= end[1:]))
    vis_idx = np.flatnonzero(visible)
    if vis_idx.size == 0:
        empty = np.zeros(0, dtype=np.int64)
        return Alignment(
            text, ids, start, end, np.zeros(ids.shape[0], np.int64), empty, empty, empty, empty,
            np.zeros(ids.shape[0], bool), newline_cum,
        )  # fmt: skip

    punct_cum = _cumsum0(punct_c)
    punct_tok = visible & (punct_cum[end] - punct_cum[start] == width)
    wid = np.asarray([-1 if w is None else w for w in word_ids], dtype=np.int64)
    # Words start at visible tokens where the tokenizer's word id changes or at punctuation;
    # a word also owns the invisible tokens right before it (trailing ones: the last word).
    vw, vp = wid[vis_idx], punct_tok[vis_idx]
    starts_v = np.ones(vis_idx.size, dtype=bool)
    starts_v[1:] = (vw[1:] != vw[:-1]) | vp[1:] | vp[:-1]
    prev_visible = np.concatenate([[-1], vis_idx[:-1]])
    new_word = np.zeros(ids.shape[0], dtype=bool)
    new_word[prev_visible[starts_v] + 1] = True
    token_word = np.cumsum(new_word) - 1
    first = np.flatnonzero(new_word)
    n_tok = np.diff(np.append(first, ids.shape[0]))
    big = np.iinfo(np.int64).max
    wstart = np.minimum.reduceat(np.where(visible, start, big), first)
    wend = np.maximum.reduceat(np.where(visible, end, -1), first)
    # Trim whitespace some tokenizers include in offsets (e.g. a leading space).
    while True:
        lead = space_c[np.minimum(wstart, len(text) - 1)] & (wend > wstart)
        trail = space_c[np.maximum(wend - 1, 0)] & (wend > wstart)
        if not (lead.any() or trail.any()):
            break
        wstart = wstart + lead
        wend = wend - trail

    # Chunk cut points: after a token that ends a sentence or precedes a line break,
    # and only where the next token starts a new word.
    next_start = np.append(start[1:], len(text))
    line_break = newline_cum[next_start] - newline_cum[end] > 0
    sent_end = np.zeros(ids.shape[0], dtype=bool)
    nonempty = width > 0
    sent_end[nonempty] = end_c[end[nonempty] - 1]
    # ...followed by whitespace or the end of the text ("x.bar" is not a sentence end).
    after = np.minimum(end, len(text) - 1)
    sent_end &= (end >= len(text)) | space_c[after]
    next_new = np.append(new_word[1:], True)
    cut = (sent_end | line_break) & next_new
    return Alignment(
        text=text,
        token_ids=ids,
        token_start=start,
        token_end=end,
        token_word=token_word.astype(np.int64),
        word_start=wstart.astype(np.int64),
        word_end=wend.astype(np.int64),
        word_first_token=first.astype(np.int64),
        word_n_tokens=n_tok.astype(np.int64),
        sentence_cut=cut,
        newline_cum=newline_cum,
    )


def chunk_spans(al: Alignment, window: int) -> list[tuple[int, int]]:
    """Split the token sequence into ``[start, end)`` chunks of at most ``window`` tokens.

    Cuts after the last sentence end or line break inside the window, else at the last
    word start, else (one word longer than a window) at the window edge.
    """
    if window < 1:
        raise ValueError(f"window must be >= 1 token, got {window}")
    n = al.n_tokens
    cuts = np.flatnonzero(al.sentence_cut) + 1  # chunk may end at these token indices
    word_starts = al.word_first_token
    spans = []
    start = 0
    while start < n:
        limit = start + window
        if limit >= n:
            spans.append((start, n))
            break
        i = np.searchsorted(cuts, limit, side="right") - 1
        end = int(cuts[i]) if i >= 0 and cuts[i] > start else 0
        if end <= start:
            j = np.searchsorted(word_starts, limit, side="right") - 1
            end = int(word_starts[j]) if j >= 0 and word_starts[j] > start else limit
        spans.append((start, end))
        start = end
    return spans


def check_unit(unit: Any) -> str:
    """``unit`` if it is one of ``UNITS``, else a ValueError naming the allowed ones."""
    if unit not in UNITS:
        raise ValueError(f"unit must be one of {', '.join(UNITS)}, got {unit!r}")
    return str(unit)


def span_ids(al: Alignment, unit: str) -> np.ndarray:
    """The span (0, 1, ...) each word belongs to: ``word`` = every word alone; ``sentence`` =
    up to a sentence end or line break (the chunk cut points); ``line`` = up to a line break."""
    if check_unit(unit) == "word" or al.n_words == 0:
        return np.arange(al.n_words, dtype=np.int64)
    if unit == "line":
        first = al.newline_cum[al.word_start]
    else:
        first = _cumsum0(al.sentence_cut)[al.word_first_token]
    starts = np.ones(al.n_words, dtype=bool)
    starts[1:] = first[1:] != first[:-1]
    return np.cumsum(starts) - 1


def line_indent(text: str, pos: int) -> str:
    """The leading blanks of the line containing character ``pos``."""
    line_start = text.rfind("\n", 0, pos) + 1
    return _INDENT.match(text, line_start).group(0)


def render(al: Alignment, keep: np.ndarray, *, keep_newlines: bool = True) -> str:
    """Rebuild text from the kept words (boolean mask over words).

    Neighbouring kept words are joined by their original gap; where words were dropped in
    between, by one space, or (``keep_newlines``) by the line breaks of the dropped stretch
    (at most as many as the largest original gap held) plus the indentation of the next
    word's line.
    """
    idx = np.flatnonzero(keep)
    if idx.size == 0:
        return ""
    text = al.text
    ws, we = al.word_start[idx], al.word_end[idx]
    nl = al.newline_cum
    # Newlines in the gap before each word, and their largest run within dropped stretches.
    all_gap_nl = np.empty(al.n_words, dtype=np.int64)
    all_gap_nl[0] = nl[al.word_start[0]]
    all_gap_nl[1:] = nl[al.word_start[1:]] - nl[al.word_end[:-1]]
    adjacent = np.zeros(idx.size, dtype=bool)
    adjacent[1:] = np.diff(idx) == 1
    # For each pair of consecutive kept words (a, b): the largest newline run in (a, b].
    max_nl = (
        np.maximum.reduceat(all_gap_nl[: idx[-1] + 1], idx[:-1] + 1).tolist()
        if idx.size > 1
        else []
    )
    pieces: list[str] = []
    ws_l, we_l, adj_l = ws.tolist(), we.tolist(), adjacent.tolist()
    for j, (s, e) in enumerate(zip(ws_l, we_l, strict=True)):
        if j == 0:
            sep = line_indent(text, s) if keep_newlines else ""
        elif adj_l[j]:
            sep = text[we_l[j - 1] : s]
            if not keep_newlines and "\n" in sep:
                sep = " "
        elif keep_newlines and max_nl[j - 1] > 0:
            sep = "\n" * max_nl[j - 1] + line_indent(text, s)
        else:
            sep = " "
        pieces.append(sep)
        pieces.append(text[s:e])
    return "".join(pieces)


def special_layout(tokenizer: Any) -> SpecialLayout:
    """Find where the tokenizer puts its special tokens, from the tokenizer itself."""
    probe_a, probe_b = "a", "b"
    a = tokenizer(probe_a, add_special_tokens=False)["input_ids"]
    b = tokenizer(probe_b, add_special_tokens=False)["input_ids"]
    single = tokenizer(probe_a, add_special_tokens=True, return_token_type_ids=True)
    pair = tokenizer(probe_a, probe_b, add_special_tokens=True, return_token_type_ids=True)

    def find(seq: list[int], sub: list[int], frm: int = 0) -> int:
        for i in range(frm, len(seq) - len(sub) + 1):
            if seq[i : i + len(sub)] == sub:
                return i
        raise ValueError("cannot locate the text inside the tokenizer's special-token template")

    s_ids = list(single["input_ids"])
    i = find(s_ids, a)
    p_ids = list(pair["input_ids"])
    pa = find(p_ids, a)
    pb = find(p_ids, b, pa + len(a))
    p_types = list(pair.get("token_type_ids") or [0] * len(p_ids))
    return SpecialLayout(
        single_prefix=tuple(s_ids[:i]),
        single_suffix=tuple(s_ids[i + len(a) :]),
        pair_prefix=tuple(p_ids[:pa]),
        pair_mid=tuple(p_ids[pa + len(a) : pb]),
        pair_suffix=tuple(p_ids[pb + len(b) :]),
        first_type=int(p_types[pa]),
        second_type=int(p_types[pb]),
    )


@dataclasses.dataclass(frozen=True)
class SpecialLayout:
    """Special-token template of a tokenizer: ``prefix [A] mid [B] suffix``."""

    single_prefix: tuple[int, ...]
    single_suffix: tuple[int, ...]
    pair_prefix: tuple[int, ...]
    pair_mid: tuple[int, ...]
    pair_suffix: tuple[int, ...]
    first_type: int = 0
    second_type: int = 0

    def overhead(self, question_len: int) -> int:
        """Positions a chunk loses to special tokens and the question."""
        if question_len:
            return len(self.pair_prefix) + len(self.pair_mid) + len(self.pair_suffix) + question_len
        return len(self.single_prefix) + len(self.single_suffix)

    def build(
        self, chunk_ids: np.ndarray, question_ids: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, int]:
        """Encoder input ids, token type ids, and the offset of the chunk's first token.

        With a question the encoder reads ``question [SEP] context`` (the tokenizer's own
        pair template); only the context positions are compressible.
        """
        if question_ids is not None and len(question_ids):
            head = np.concatenate(
                [
                    np.asarray(self.pair_prefix, np.int64),
                    question_ids,
                    np.asarray(self.pair_mid, np.int64),
                ]
            )
            tail = np.asarray(self.pair_suffix, np.int64)
            types = np.concatenate(
                [
                    np.full(len(head), self.first_type, np.int64),
                    np.full(len(chunk_ids) + len(tail), self.second_type, np.int64),
                ]
            )
        else:
            head = np.asarray(self.single_prefix, np.int64)
            tail = np.asarray(self.single_suffix, np.int64)
            types = np.zeros(len(head) + len(chunk_ids) + len(tail), np.int64)
        ids = np.concatenate([head, chunk_ids.astype(np.int64), tail])
        return ids, types, len(head)
