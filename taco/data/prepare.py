"""`taco prepare`: raw snapshot → Example rows: normalise, dedupe, segment, filter, group split."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import re
import unicodedata
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from taco.config import SPLITS, Params, PrepareParams
from taco.data.files import (
    DataFileError,
    dump_jsonl,
    read_jsonl,
    words,
    write_atomic,
)
from taco.data.schema import Example
from taco.layout import RAW_RECORDS, STATS_FILE, Layout

log = logging.getLogger(__name__)

_BLANK_LINES = re.compile(r"\n\s*\n")


def salted(seed: int, key: str) -> str:
    """A seed-dependent, platform-independent sort key."""
    return hashlib.sha1(f"{seed}\x1f{key}".encode()).hexdigest()


def load_raw(path: Path) -> list[Example]:
    """Raw records as Examples; a bad line or field names the file, line, field and record."""
    return [Example.from_dict(row, where=f"{path}:{n}") for n, row in read_jsonl(path)]


def normalise(ex: Example) -> Example:
    """NFC text; trailing spaces and outer blank lines dropped (indentation kept for code); a
    record without a group is its own group."""

    def clean_block(text: str) -> str:
        lines = unicodedata.normalize("NFC", text).replace("\r\n", "\n").split("\n")
        return "\n".join(line.rstrip() for line in lines).strip("\n")

    def clean_line(text: str) -> str:
        return " ".join(unicodedata.normalize("NFC", text).split())

    return dataclasses.replace(
        ex,
        context=clean_block(ex.context),
        question=clean_line(ex.question),
        references=tuple(r for r in (clean_line(r) for r in ex.references) if r),
        group=ex.group or ex.id,
    )


def dedupe(examples: Iterable[Example]) -> tuple[list[Example], int]:
    """Keep the first of each (context, question) pair; return the rest's count."""
    seen: set[tuple[str, str]] = set()
    kept = []
    dropped = 0
    for ex in examples:
        key = (ex.context, ex.question)
        if key in seen:
            dropped += 1
        else:
            seen.add(key)
            kept.append(ex)
    return kept, dropped


def _units(text: str, max_words: int) -> Iterable[tuple[str, str]]:
    """(unit, separator before it) pieces of at most ``max_words`` words: paragraphs, then
    lines (turns), then word windows as the last resort."""
    for para in _BLANK_LINES.split(text):
        if words(para) <= max_words:
            yield para, "\n\n"
            continue
        for j, line in enumerate(para.split("\n")):
            sep = "\n\n" if j == 0 else "\n"
            if words(line) <= max_words:
                yield line, sep
                continue
            tokens = line.split()
            for i in range(0, len(tokens), max_words):
                yield " ".join(tokens[i : i + max_words]), sep if i == 0 else " "


def segment_text(text: str, max_words: int) -> list[str]:
    """Cut ``text`` at paragraph / turn boundaries into pieces of at most ``max_words`` words."""
    if words(text) <= max_words:
        return [text]
    pieces: list[str] = []
    current = ""
    size = 0
    for unit, sep in _units(text, max_words):
        n = words(unit)
        if current and size + n > max_words:
            pieces.append(current)
            current, size = "", 0
        current = f"{current}{sep}{unit}" if current else unit
        size += n
    if current:
        pieces.append(current)
    return [p.strip() for p in pieces if p.strip()]


def segment(ex: Example, max_words: int) -> list[Example]:
    """Segments of a long context. QA keeps only segments holding a gold answer; code is never
    cut (a half function has no docstring); other tasks give each segment the whole reference."""
    if ex.task == "code" or words(ex.context) <= max_words:
        return [ex]
    parts = segment_text(ex.context, max_words)
    out = [dataclasses.replace(ex, id=f"{ex.id}#{i}", context=part) for i, part in enumerate(parts)]
    if ex.task == "qa":
        out = [s for s in out if any(r in s.context for r in ex.references)]
    return out


def length_problem(ex: Example, p: PrepareParams) -> str | None:
    """Why ``ex`` falls outside the length limits, or None."""
    n = words(ex.context)
    if n < p.min_context_words:
        return "context_too_short"
    if n > p.max_context_words:
        return "context_too_long"
    ref_words = [words(r) for r in ex.references]
    if not ref_words:
        return "no_reference"  # e.g. SQuAD 2.0 unanswerable questions kept in the raw snapshot
    if min(ref_words) < p.min_reference_words:
        return "reference_too_short"
    if max(ref_words) > p.max_reference_words:
        return "reference_too_long"
    return None


def split_by_group(
    examples: Sequence[Example], seed: int, val_fraction: float, test_fraction: float
) -> dict[str, list[Example]]:
    """Deterministic group split: groups in salted-hash order fill test, then val, then train.

    Each group lands in exactly one split; with three or more groups and non-zero fractions,
    test and val each get at least one group.
    """
    by_group: dict[str, list[Example]] = {}
    for ex in examples:
        by_group.setdefault(ex.group or ex.id, []).append(ex)
    order = sorted(by_group, key=lambda g: salted(seed, g))
    targets = {"test": test_fraction * len(examples), "val": val_fraction * len(examples)}
    out: dict[str, list[Example]] = {s: [] for s in SPLITS}
    split_iter = iter(("test", "val"))
    current = next(split_iter)
    for i, group in enumerate(order):
        remaining = len(order) - i
        while current != "train" and (
            targets[current] <= 0 or (out[current] and len(out[current]) >= targets[current])
        ):
            current = next(split_iter, "train")
        if current != "train" and remaining <= 1 and not out["train"]:
            current = "train"  # keep the last group for training
        out[current].extend(by_group[group])
    return out


def cap(rows: list[Example], limit: int | None, seed: int) -> list[Example]:
    """At most ``limit`` rows, a seed-determined sample kept in its original order."""
    if limit is None or len(rows) <= limit:
        return rows
    chosen = set(sorted(range(len(rows)), key=lambda i: salted(seed, rows[i].id))[:limit])
    return [ex for i, ex in enumerate(rows) if i in chosen]


def percentiles(values: Sequence[int]) -> dict[str, float]:
    """p5 / p50 / p95 / max of a list of lengths (zeros when empty)."""
    if not values:
        return {"p5": 0, "p50": 0, "p95": 0, "max": 0}
    ordered = sorted(values)

    def at(q: float) -> float:
        return float(ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))])

    return {"p5": at(0.05), "p50": at(0.5), "p95": at(0.95), "max": float(ordered[-1])}


def prepare_examples(
    raw: Sequence[Example], p: PrepareParams, seed: int
) -> tuple[dict[str, list[Example]], dict[str, Any]]:
    """The pure core of `prepare`: splits and the stats that describe them."""
    normalised = [normalise(ex) for ex in raw]
    unique, n_dup = dedupe(normalised)
    pieces = unique
    if p.long_context == "segment":
        pieces = [s for ex in unique for s in segment(ex, p.segment_words)]
    dropped: dict[str, int] = {"duplicate": n_dup}
    kept = []
    for ex in pieces:
        problem = length_problem(ex, p)
        if problem is None:
            kept.append(ex)
        else:
            dropped[problem] = dropped.get(problem, 0) + 1
    full = split_by_group(kept, seed, p.val_fraction, p.test_fraction)
    splits = {s: cap(full[s], p.max_rows.get(s), seed) for s in SPLITS}
    candidates = n_dup + len(pieces)
    rows = [ex for s in SPLITS for ex in splits[s]]
    stats = {
        "raw_rows": len(raw),
        "segments_added": len(pieces) - len(unique),
        "dropped": dropped,
        "dropped_share": round(sum(dropped.values()) / candidates, 4) if candidates else 0.0,
        "rows": {s: len(splits[s]) for s in SPLITS},
        "rows_before_cap": {s: len(full[s]) for s in SPLITS},
        "groups": {s: len({ex.group for ex in splits[s]}) for s in SPLITS},
        "context_words": percentiles([words(ex.context) for ex in rows]),
        "reference_words": percentiles([words(r) for ex in rows for r in ex.references]),
    }
    return splits, stats


def prepare(params: Params, root: Path = Path(".")) -> dict[str, Any]:
    """Read the raw snapshot, write train/val/test JSONL and stats.json; return the stats."""
    layout = Layout.of(params, root)
    src = layout.raw_dir / RAW_RECORDS
    if not src.exists():
        raise DataFileError(f"raw snapshot not found: {src} (run `taco ingest` first)")
    raw = load_raw(src)
    if not raw:
        raise DataFileError(f"{src}: the raw snapshot is empty")
    splits, stats = prepare_examples(raw, params.prepare, params.base.seed)
    stats = {"task": params.base.task, **stats}
    out = layout.prepared_dir
    # Each file goes to a temp name and is renamed; a failure before this point leaves the
    # previous prepared files untouched.
    for split in SPLITS:
        write_atomic(layout.split(split), dump_jsonl(ex.to_dict() for ex in splits[split]))
    write_atomic(out / STATS_FILE, json.dumps(stats, indent=2) + "\n")
    log.info("prepare: %s -> %s (dropped share %.3f)", stats["rows"], out, stats["dropped_share"])
    return stats


def run(params: Params, root: Path = Path(".")) -> dict[str, Any]:
    """The ``prepare`` stage: write the splits; returns rows per split and the dropped share."""
    stats = prepare(params, root)
    return {"rows": stats["rows"], "dropped_share": stats["dropped_share"]}
