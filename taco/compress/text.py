"""Words, chunks and text rebuilding: sub-token → word alignment with character offsets.

A *word* is what the encoder's own tokenizer calls a word (its pre-tokenizer's
``word_ids``), with punctuation-only tokens split off as words of their own, so WordPiece
(BERT) and SentencePiece (XLM-R) tokenizers get the same kind of units LLMLingua-2 uses,
without ever looking at the model's name. Two exceptions make words of what a reader reads
as one or several: a *number* (``NUMBER``: digits with the ``.``, ``,``, ``:``, ``-``, ``/``
inside it, a leading sign or currency sign, a trailing ``%``) is one word however the
tokenizer cuts it, and in scripts written without spaces (CJK, kana, Thai, ...: ``NO_SPACE``)
every token is a word. Every word is a character span of the original text, so the
compressed text is rebuilt from the original characters (case, unicode, punctuation), with
line breaks (in the text's own style: LF, CRLF or CR) and indentation kept on kept lines, and
no space put between pieces of writing that had none.
"""

from __future__ import annotations

import bisect
import dataclasses
import re
import unicodedata
from collections.abc import Sequence
from typing import Any

import numpy as np

from taco.errors import ArgumentError

UNITS = ("word", "sentence", "line")
_INDENT = re.compile(r"[ \t]*")

# Scripts written without spaces between words, as inclusive code point ranges. Hangul is
# written with spaces and is not among them.
NO_SPACE = (
    (0x0E00, 0x0EFF),  # Thai, Lao
    (0x0F00, 0x0FFF),  # Tibetan
    (0x1000, 0x109F),  # Myanmar
    (0x1780, 0x17FF),  # Khmer
    (0x1950, 0x1AAF),  # Tai Le, New Tai Lue, Khmer symbols, Buginese, Tai Tham
    (0x1B00, 0x1B7F),  # Balinese
    (0x2E80, 0x2FFF),  # CJK and Kangxi radicals, ideographic description
    (0x3000, 0x312F),  # CJK symbols and punctuation, Hiragana, Katakana, Bopomofo
    (0x3190, 0x4DBF),  # Kanbun, CJK strokes, Katakana extension, enclosed CJK, CJK ext. A
    (0x4E00, 0x9FFF),  # CJK unified ideographs
    (0xA000, 0xA4CF),  # Yi
    (0xA980, 0xA9DF),  # Javanese
    (0xF900, 0xFAFF),  # CJK compatibility ideographs
    (0xFE30, 0xFE4F),  # CJK compatibility forms
    (0xFF00, 0xFF9F),  # fullwidth forms, halfwidth CJK punctuation and Katakana
    (0xFFE0, 0xFFEE),  # fullwidth and halfwidth symbols
    (0x16FE0, 0x16FFF),  # ideographic symbols
    (0x1B000, 0x1B16F),  # kana supplement and extensions
    (0x20000, 0x323AF),  # CJK extensions B-H, compatibility supplement
)
_NO_SPACE_EDGES = np.array([x for lo, hi in NO_SPACE for x in (lo, hi + 1)], dtype=np.int64)
_NO_SPACE_EDGE_LIST = _NO_SPACE_EDGES.tolist()
_NO_SPACE_CLASS = "".join(f"{re.escape(chr(lo))}-{re.escape(chr(hi))}" for lo, hi in NO_SPACE)
# Unicode currency symbols (category Sc).
_CURRENCY = (
    "$\xa2-\xa5\u058f\u060b\u07fe\u07ff\u09f2\u09f3\u09fb\u0af1\u0bf9\u0e3f\u17db"
    "\u20a0-\u20cf\ua838\ufdfc\ufe69\uff04\uffe0\uffe1\uffe5\uffe6"
)
NUMBER = re.compile(
    rf"(?:[{_CURRENCY}]|(?<![\w.,:/+\u2212-])[-+\u2212](?=\d))?"  # currency or sign
    r"\d+(?:[.,:/-]\d+)*[%\u2030]?"  # digits with inner separators, trailing % or ‰
)
# A sentence ends after . ! ? ; followed by whitespace, the end or writing without spaces,
# and after 。！？；｡ wherever they are, with the closing quotes/brackets that follow them.
_CLOSERS = re.escape("\"'”’」』）】〕〉》〗〙〛｣)]")
_SENTENCE_END = re.compile(rf"[.!?;](?=\s|\Z|[{_NO_SPACE_CLASS}])|[。！？；｡][{_CLOSERS}]*")
_LINE_BREAK = re.compile(r"\r\n?|\n")
_SPACE = re.compile(r"\s")


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
    newline_cum: np.ndarray  # newline_cum[i] = line breaks (LF, CRLF, CR) in text[:i]

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


def codepoints(text: str) -> np.ndarray:
    """The text's code points: a uint32 array, one per character."""
    return np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)


def _char_classes(cps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per character: is punctuation/symbol, is whitespace."""
    uniq, inverse = np.unique(cps, return_inverse=True)
    chars = [chr(c) for c in uniq.tolist()]
    punct = np.array([unicodedata.category(c)[0] in "PS" for c in chars], dtype=bool)
    space = np.array([c.isspace() for c in chars], dtype=bool)
    return punct[inverse], space[inverse]


def no_space(cps: np.ndarray) -> np.ndarray:
    """Per code point: does it belong to a script written without spaces (``NO_SPACE``)?"""
    return np.searchsorted(_NO_SPACE_EDGES, cps, side="right") % 2 == 1


def _no_space_char(ch: str) -> bool:
    return bisect.bisect_right(_NO_SPACE_EDGE_LIST, ord(ch)) % 2 == 1


def _cumsum0(mask: np.ndarray) -> np.ndarray:
    out = np.zeros(mask.shape[0] + 1, dtype=np.int64)
    np.cumsum(mask, out=out[1:])
    return out


def _cover_index(n: int, spans: list[tuple[int, int]]) -> np.ndarray:
    """Per character of an ``n``-character text: the index of the (disjoint) ``spans`` that
    covers it, else -1."""
    out = np.full(n + 1, -1, dtype=np.int64)
    if spans:
        se = np.asarray(spans, dtype=np.int64)
        mark = np.zeros(n + 1, dtype=np.int64)
        np.add.at(mark, se[:, 0], 1)
        np.add.at(mark, se[:, 1], -1)
        inside = np.cumsum(mark)[:n] > 0
        out[:n][inside] = (np.cumsum(np.bincount(se[:, 0], minlength=n)[:n]) - 1)[inside]
    return out


def line_breaks(cps: np.ndarray) -> np.ndarray:
    """Per code point: does a line break end here (``\\n``, or a ``\\r`` not followed by
    ``\\n``; a CRLF is one break, at its ``\\n``)?"""
    cr = cps == 13
    cr[:-1] &= cps[1:] != 10
    return (cps == 10) | cr


def align(text: str, tokenizer: Any) -> Alignment:
    """Tokenize ``text`` once (no special tokens) and group its tokens into words.

    A word is the tokenizer's word with punctuation split off, except that a number
    (``NUMBER``) is one word however many tokens and punctuation it has, and a token in a
    script written without spaces (``NO_SPACE``) is a word of its own. Raises TypeError for
    a tokenizer without character offsets (not a fast tokenizer).
    """
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
    cps = codepoints(text)
    punct_c, space_c = _char_classes(cps) if len(text) else (np.zeros(0, bool),) * 2
    newline_cum = _cumsum0(line_breaks(cps))

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
    # In writing without spaces every token is a word (the tokenizer's word is a whole run).
    vs, ve = start[vis_idx], end[vis_idx]
    ns_first, ns_last = no_space(cps[vs]), no_space(cps[ve - 1])
    starts_v[1:] |= ns_first[1:] | ns_last[:-1]
    # A number is one word: a token inside the number the previous token ends in continues it.
    number = _cover_index(len(text), [m.span() for m in NUMBER.finditer(text)])
    starts_v[1:] &= ~((number[vs[1:]] >= 0) & (number[vs[1:]] == number[ve[:-1] - 1]))
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
    end_c = np.zeros(len(text) + 1, dtype=bool)
    end_c[[m.end() - 1 for m in _SENTENCE_END.finditer(text)]] = True
    sent_end = np.zeros(ids.shape[0], dtype=bool)
    nonempty = width > 0
    sent_end[nonempty] = end_c[end[nonempty] - 1]
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
        raise ArgumentError(f"window must be >= 1 token, got {window}")
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
        raise ArgumentError(f"unit must be one of {', '.join(UNITS)}, got {unit!r}")
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
    """The leading blanks of the line (ended by LF, CRLF or CR) containing character ``pos``."""
    lo, width, line_start = pos, 256, 0
    while lo > 0:  # look back in growing windows: the cost is the line's length, not pos
        lo = max(0, pos - width)
        brk = max(text.rfind("\n", lo, pos), text.rfind("\r", lo, pos))
        if brk >= 0:
            line_start = brk + 1
            break
        width *= 4
    return _INDENT.match(text, line_start).group(0)


def line_break(text: str, pos: int) -> str:
    """The first line break (``"\\n"``, ``"\\r\\n"`` or ``"\\r"``) at or after ``pos``;
    ``"\\n"`` if there is none."""
    m = _LINE_BREAK.search(text, pos)
    return m.group() if m else "\n"


def join_gap(text: str, end: int, start: int) -> str:
    """What joins two kept pieces ``text[..end]`` and ``text[start..]`` when the words
    between them were dropped: one space where the dropped stretch held whitespace, nothing
    where it held none and either piece meets it in a script written without spaces (CJK,
    kana, Thai, ...), else one space (``x.bar`` without the dot is ``x bar``, not ``xbar``)."""
    if _SPACE.search(text, end, start) is None and (
        _no_space_char(text[end - 1]) or _no_space_char(text[start])
    ):
        return ""
    return " "


def render(al: Alignment, keep: np.ndarray, *, keep_newlines: bool = True) -> str:
    """Rebuild text from the kept words (boolean mask over words).

    Neighbouring kept words are joined by their original gap; where words were dropped in
    between, by ``join_gap`` (one space, or nothing in writing without spaces), or
    (``keep_newlines``) by the line breaks of the dropped stretch (at most as many as the
    largest original gap held, in the text's own style: LF, CRLF or CR) plus the indentation
    of the next word's line. Without ``keep_newlines`` a line break becomes one space.
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
            if not keep_newlines and ("\n" in sep or "\r" in sep):
                sep = " "
        elif keep_newlines and max_nl[j - 1] > 0:
            sep = line_break(text, we_l[j - 1]) * max_nl[j - 1] + line_indent(text, s)
        elif text[we_l[j - 1]].isspace() or text[s - 1].isspace():
            sep = " "  # (join_gap's answer, fast)
        else:
            sep = join_gap(text, we_l[j - 1], s)
        pieces.append(sep)
        pieces.append(text[s:e])
    return "".join(pieces)


def render_parts(
    al: Alignment,
    keep: np.ndarray,
    segments: Sequence[tuple[int, int]],
    *,
    keep_newlines: bool = True,
) -> tuple[str, ...]:
    """``render`` of the kept words inside each ``[start, end)`` character range of
    ``segments`` (e.g. the contexts of a list joined into one text): one string per segment,
    in order, ``""`` where no word of it is kept."""
    out = []
    for lo, hi in segments:
        inside = keep & (al.word_start >= lo) & (al.word_end <= hi)
        out.append(render(al, inside, keep_newlines=keep_newlines))
    return tuple(out)


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
