"""The Example schema: the one record type every stage reads and writes (JSONL rows)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from taco.errors import UserError

BUILTIN_TASKS = ("qa", "summarization", "code")


class SchemaError(UserError, ValueError):
    """A record does not fit the Example schema (the message names the field and record id)."""


@dataclasses.dataclass(frozen=True)
class Example:
    """One task instance.

    - ``context``: the part that gets compressed.
    - ``question``: QA question or task instruction; never compressed ("" when none).
    - ``references``: gold outputs (answers for QA, summaries, docstrings).
    - ``group``: the unit for splitting (article, meeting, repository or file).
    """

    id: str
    task: str
    context: str
    question: str = ""
    references: tuple[str, ...] = ()
    group: str = ""
    source: str = ""

    REQUIRED = ("id", "task", "context")

    @classmethod
    def from_dict(cls, row: Mapping[str, Any], *, where: str = "") -> Example:
        """Build from a JSON object; raise SchemaError naming the field and the record id."""
        prefix = f"{where}: " if where else ""
        if not isinstance(row, Mapping):
            raise SchemaError(f"{prefix}expected a JSON object, got {type(row).__name__}")
        rid = row.get("id", "<no id>")
        for name in cls.REQUIRED:
            if name not in row or row[name] is None:
                raise SchemaError(f"{prefix}record {rid!r}: required field '{name}' is missing")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(row) - known)
        if unknown:
            raise SchemaError(f"{prefix}record {rid!r}: unknown field(s) {', '.join(unknown)}")
        refs = row.get("references", ())
        if isinstance(refs, str) or not isinstance(refs, list | tuple):
            raise SchemaError(
                f"{prefix}record {rid!r}: field 'references' must be a list of strings"
            )
        values = {k: row[k] for k in known if k in row and row[k] is not None}
        for name in ("id", "task", "context", "question", "group", "source"):
            if name in values and not isinstance(values[name], str):
                raise SchemaError(f"{prefix}record {rid!r}: field '{name}' must be a string")
        if not all(isinstance(r, str) for r in refs):
            raise SchemaError(
                f"{prefix}record {rid!r}: field 'references' must be a list of strings"
            )
        values["references"] = tuple(refs)
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (references as a list)."""
        out = dataclasses.asdict(self)
        out["references"] = list(self.references)
        return out
