"""File I/O shared by the data stages: JSON(L) with file:line errors, atomic writes."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any

from taco.data.schema import Example
from taco.errors import UserError


class DataFileError(UserError, ValueError):
    """A data file cannot be read; the message names the file and line."""


def words(text: str) -> int:
    """Length unit of every data limit: whitespace-separated words (≈ 1.3 LLM tokens each)."""
    return len(text.split())


def open_text(path: Path) -> IO[str]:
    """Open a UTF-8 text file, transparently gunzipping ``*.gz``."""
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8")
    return path.open(encoding="utf-8")


def read_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line number, object) from JSONL(.gz); a bad line raises naming file and line."""
    with open_text(path) as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataFileError(f"{path}:{lineno}: malformed JSON ({exc.msg})") from None
            if not isinstance(row, dict):
                kind = type(row).__name__
                raise DataFileError(f"{path}:{lineno}: expected a JSON object, got {kind}")
            yield lineno, row


def read_json(path: Path) -> Any:
    """Load a whole JSON document; a syntax error names the file and line."""
    try:
        with open_text(path) as fh:
            return json.load(fh)
    except json.JSONDecodeError as exc:
        raise DataFileError(f"{path}:{exc.lineno}: malformed JSON ({exc.msg})") from None


def dump_jsonl(rows: Iterable[Mapping[str, Any]]) -> str:
    """Rows as JSON lines (UTF-8 text, key order kept)."""
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to a temp file beside ``path`` and rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def read_examples(path: Path) -> list[Example]:
    """Example rows of a prepared split; a clear error when the file is missing or malformed."""
    if not path.is_file():
        raise DataFileError(f"prepared split not found: {path} (run `taco prepare` first)")
    return [Example.from_dict(row, where=f"{path}:{n}") for n, row in read_jsonl(path)]
