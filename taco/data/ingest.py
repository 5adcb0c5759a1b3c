"""`taco ingest`: source loaders (official formats, user tables, URLs, HF) and the raw snapshot."""

from __future__ import annotations

import hashlib
import json
import logging
import platform
import re
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from taco.config import IngestParams, Params
from taco.data.files import (
    DataFileError,
    dump_jsonl,
    open_text,
    read_json,
    read_jsonl,
    write_atomic,
)
from taco.data.miner import mine_python
from taco.data.schema import Example
from taco.layout import RAW_RECORDS, RAW_SNAPSHOT, Layout

log = logging.getLogger(__name__)

Record = dict[str, Any]

# Formats that only make sense for one built-in task; the others serve any task.
FORMAT_TASKS = {
    "python": "code",
    "codesearchnet": "code",
    "squad": "qa",
    "qmsum": "summarization",
    "meetingbank": "summarization",
}


class SourceError(DataFileError):
    """A source cannot be read; the message names the file, line, field or record."""


# ------------------------------------------------------------------------------ helpers


def require(row: Mapping[str, Any], names: Iterable[str], where: str, rid: Any) -> None:
    """Raise SourceError naming the first missing (or null) field and the record id."""
    for name in names:
        if row.get(name) is None:
            raise SourceError(f"{where}: record {rid!r}: required field '{name}' is missing")


def _files(path: Path, patterns: tuple[str, ...]) -> list[tuple[Path, str]]:
    """(file, label) pairs; labels are relative to ``path`` so snapshots do not depend on
    where the source lives on disk."""
    if path.is_dir():
        found = sorted({f for pattern in patterns for f in path.rglob(pattern) if f.is_file()})
        if not found:
            raise SourceError(f"{path}: no files matching {', '.join(patterns)}")
        return [(f, f.relative_to(path).as_posix()) for f in found]
    if not path.exists():
        raise SourceError(f"source not found: {path}")
    return [(path, path.name)]


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(s.strip() for s in items if isinstance(s, str) and s.strip()))


def short_hash(*parts: str) -> str:
    """A stable 16-hex id fragment from strings."""
    return hashlib.sha1("\x1f".join(parts).encode("utf-8")).hexdigest()[:16]


# ------------------------------------------------------------------------------ SQuAD


def squad_rows(doc: Any, where: str) -> Iterator[Record]:
    """Flatten an official SQuAD v1.1/v2.0 JSON document into one row per question."""
    if not isinstance(doc, Mapping) or not isinstance(doc.get("data"), list):
        raise SourceError(f"{where}: not a SQuAD file (expected a top-level 'data' list)")
    for article in doc["data"]:
        title = article.get("title", "")
        for para in article.get("paragraphs", []):
            require(para, ("context",), where, title)
            for qa in para.get("qas", []):
                yield {"title": title, "context": para["context"], **qa}


def squad_record(row: Mapping[str, Any], where: str, include_unanswerable: bool) -> Record | None:
    """One SQuAD question (official or HF-flattened row) as a raw record; None when skipped."""
    require(row, ("id", "question", "context"), where, row.get("id"))
    answers = row.get("answers") or []
    if isinstance(answers, Mapping):  # HF `squad` / `squad_v2` rows: {"text": [...], ...}
        texts = list(answers.get("text", []))
    else:
        texts = [a.get("text") for a in answers if isinstance(a, Mapping)]
    refs = _unique(texts)
    if not refs and not include_unanswerable:
        return None
    return {
        "id": f"squad-{row['id']}",
        "context": row["context"],
        "question": row["question"],
        "references": refs,
        "group": row.get("title", ""),
        "source": f"SQuAD ({where})",
    }


def load_squad(path: Path, include_unanswerable: bool = False) -> Iterator[Record]:
    """SQuAD v1.1/v2.0 official JSON file(s): answerable questions (v2 unanswerable optional)."""
    for file, label in _files(path, ("*.json",)):
        for row in squad_rows(read_json(file), label):
            rec = squad_record(row, label, include_unanswerable)
            if rec is not None:
                yield rec


# ------------------------------------------------------------------------------ meetings

_MARKER = re.compile(r"\{[a-z_]+\}")
_AMI = re.compile(r"^((?:ES|IS|TS)\d{4})[a-d]$")


def clean_turn(text: str) -> str:
    """Drop QMSum annotation markers ({disfmarker}, {vocalsound}, ...) and collapse spaces."""
    return " ".join(_MARKER.sub(" ", text).split())


def meeting_group(meeting: str) -> str:
    """The split unit for a QMSum meeting: an AMI series (ES2002a-d) is one group."""
    match = _AMI.match(meeting)
    return match.group(1) if match else meeting


def load_qmsum(path: Path) -> Iterator[Record]:
    """QMSum per-meeting JSON files: the whole transcript with each general query's answer."""
    for file, where in _files(path, ("*.json",)):
        doc = read_json(file)
        meeting = file.stem
        require(doc, ("meeting_transcripts", "general_query_list"), where, meeting)
        turns = []
        for i, turn in enumerate(doc["meeting_transcripts"]):
            require(turn, ("speaker", "content"), where, f"{meeting} turn {i}")
            content = clean_turn(turn["content"])
            if content:
                turns.append(f"{turn['speaker']}: {content}")
        for i, query in enumerate(doc["general_query_list"]):
            require(query, ("query", "answer"), where, f"{meeting} general query {i}")
            yield {
                "id": f"qmsum-{meeting}-g{i}",
                "context": "\n".join(turns),
                "question": query["query"].strip(),
                "references": _unique([query["answer"]]),
                "group": meeting_group(meeting),
                "source": f"QMSum ({where})",
            }


def meetingbank_record(row: Mapping[str, Any], where: str) -> Record:
    """One MeetingBank segment (authors' HF/JSON release: id, uid, summary, transcript)."""
    rid = row.get("uid", row.get("id"))
    require(row, ("uid", "transcript", "summary"), where, rid)
    uid = str(row["uid"])
    return {
        "id": f"meetingbank-{uid}",
        "context": row["transcript"],
        "question": "",
        "references": _unique([row["summary"]]),
        "group": "_".join(uid.split("_")[:2]),  # City_MMDDYYYY: one meeting
        "source": f"MeetingBank ({where})",
    }


def _json_rows(file: Path, label: str) -> Iterator[tuple[str, Record]]:
    """Rows of a JSON array file or a JSON-lines file, each with its 'file:line' location."""
    with open_text(file) as fh:
        head = fh.read(1)
        while head and head.isspace():
            head = fh.read(1)
    if head == "[":
        for i, row in enumerate(read_json(file)):
            yield f"{label}[{i}]", row
    else:
        for lineno, row in read_jsonl(file):
            yield f"{label}:{lineno}", row


def load_meetingbank(path: Path) -> Iterator[Record]:
    """MeetingBank segment files (train/validation/test .json, JSON lines or a JSON array)."""
    for file, label in _files(path, ("*.json", "*.jsonl", "*.json.gz", "*.jsonl.gz")):
        for where, row in _json_rows(file, label):
            yield meetingbank_record(row, where)


# ------------------------------------------------------------------------------ code

_CSN_ALIASES = {
    "code": ("code", "func_code_string", "original_string"),
    "docstring": ("docstring", "func_documentation_string"),
    "func_name": ("func_name",),
    "repo": ("repo", "repository_name"),
    "path": ("path", "func_path_in_repository"),
}


def codesearchnet_record(row: Mapping[str, Any], where: str) -> Record:
    """One CodeSearchNet function (JSONL or HF row), docstring removed; its first sentence."""
    from taco.data.miner import first_sentence, strip_docstring

    values = {}
    for name, aliases in _CSN_ALIASES.items():
        values[name] = next((row[a] for a in aliases if row.get(a) is not None), None)
    rid = row.get("url") or f"{values['repo']}/{values['path']}:{values['func_name']}"
    require(values, _CSN_ALIASES, where, rid)
    return {
        "id": f"csn-{short_hash(str(rid), values['code'])}",
        "context": strip_docstring(values["code"], values["docstring"]),
        "question": "",
        "references": _unique([first_sentence(values["docstring"])]),
        "group": values["repo"],
        "source": f"CodeSearchNet ({values['repo']}/{values['path']}; {where})",
    }


def load_codesearchnet(path: Path) -> Iterator[Record]:
    """CodeSearchNet JSONL / JSONL.GZ files (`code`, `docstring`, `func_name`, `repo`, `path`)."""
    for file, label in _files(path, ("*.jsonl", "*.jsonl.gz")):
        for lineno, row in read_jsonl(file):
            yield codesearchnet_record(row, f"{label}:{lineno}")


# ------------------------------------------------------------------------------ shared dev / tables


def load_shared(path: Path) -> Iterator[Record]:
    """The project's shared dev files (../shared/data/<task>/dev.jsonl; see their README)."""
    for lineno, row in read_jsonl(path):
        where = f"{path.name}:{lineno}"
        refs_field = "answers" if "answers" in row else "reference"
        require(row, ("id", "context", refs_field), where, row.get("id"))
        refs = row[refs_field]
        yield {
            "id": row["id"],
            "context": row["context"],
            "question": row.get("question", ""),
            "references": _unique([refs] if isinstance(refs, str) else refs),
            "group": row.get("group", ""),
            "source": row.get("source", path.name),
        }


def table_record(row: Mapping[str, Any], fields: Mapping[str, str], where: str, n: int) -> Record:
    """Map a user table row to a raw record: ``fields`` maps Example field -> column name."""
    col = {name: fields.get(name, name) for name in Example.__dataclass_fields__}
    rid = row.get(col["id"])
    rid = f"row-{n}" if rid is None or rid == "" else str(rid)
    require(row, (col["context"],), where, rid)
    refs = row.get(col["references"])
    if refs is None:
        refs = []
    elif isinstance(refs, str):
        refs = [refs]
    else:
        refs = list(refs)
    return {
        "id": rid,
        "context": row[col["context"]],
        "question": row.get(col["question"]) or "",
        "references": _unique(refs),
        "group": str(row.get(col["group"]) or rid),
        "source": str(row.get(col["source"]) or where),
    }


def _table_rows(path: Path, label: str, fmt: str) -> Iterator[tuple[str, Record]]:
    if fmt == "jsonl":
        for lineno, row in read_jsonl(path):
            yield f"{label}:{lineno}", row
        return
    import pandas as pd

    frame = pd.read_csv(path, dtype=str, keep_default_na=False) if fmt == "csv" else None
    if frame is None:
        frame = pd.read_parquet(path)
    for i, row in enumerate(frame.to_dict(orient="records")):
        yield f"{label} row {i + 1}", row


def load_table(path: Path, fmt: str, fields: Mapping[str, str]) -> Iterator[Record]:
    """Generic JSONL / CSV / Parquet with a field mapping, for users' own tasks."""
    patterns = {"jsonl": ("*.jsonl", "*.jsonl.gz"), "csv": ("*.csv",), "parquet": ("*.parquet",)}
    n = 0
    for file, label in _files(path, patterns[fmt]):
        for where, row in _table_rows(file, label, fmt):
            n += 1
            yield table_record(row, fields, where, n)


# ------------------------------------------------------------------------------ remote sources


def hf_rows(name: str, split: str) -> list[Record]:
    """Rows of a Hugging Face dataset ``NAME`` or ``NAME:CONFIG``; offline gives one clear error."""
    import datasets

    repo, _, config = name.partition(":")
    try:
        ds = datasets.load_dataset(repo, config or None, split=split)
    except Exception as exc:  # the hub client raises many types; all mean "cannot get it"
        raise SourceError(
            f"cannot load Hugging Face dataset {name!r} (split {split!r}): the Hugging Face Hub "
            f"is not reachable or the dataset is not cached (offline mode or no network); "
            f"cause: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        ) from exc
    return [dict(row) for row in ds]


def download(url: str, folder: Path) -> Path:
    """Fetch an http(s) URL into ``folder``; no network gives one clear error."""
    name = Path(urllib.parse.urlparse(url).path).name or "download"
    target = folder / name
    try:
        with urllib.request.urlopen(url, timeout=60) as resp, target.open("wb") as out:
            while chunk := resp.read(1 << 20):
                out.write(chunk)
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise SourceError(
            f"cannot download {url}: the network is not reachable ({reason})"
        ) from exc
    return target


_ROW_CONVERTERS: dict[str, Callable[[Mapping[str, Any], str, IngestParams], Record | None]] = {
    "squad": lambda row, where, p: squad_record(row, where, p.include_unanswerable),
    "meetingbank": lambda row, where, p: meetingbank_record(row, where),
    "codesearchnet": lambda row, where, p: codesearchnet_record(row, where),
}


def load_hf(params: IngestParams) -> Iterator[Record]:
    """A Hugging Face dataset through the row converter of ``params.format``."""
    name = str(params.path).removeprefix("hf:")
    rows = hf_rows(name, params.hf_split)
    for i, row in enumerate(rows):
        where = f"hf:{name}[{params.hf_split}][{i}]"
        if params.format in _ROW_CONVERTERS:
            rec = _ROW_CONVERTERS[params.format](row, where, params)
        elif params.format in ("jsonl", "csv", "parquet"):
            rec = table_record(row, params.fields, where, i + 1)
        else:
            raise SourceError(f"ingest.format '{params.format}' cannot read a Hugging Face dataset")
        if rec is not None:
            yield rec


# ------------------------------------------------------------------------------ ingest


def load_local(params: IngestParams, path: Path | None) -> Iterator[Record]:
    """Dispatch a local source (file or folder) to the loader of ``params.format``."""
    fmt = params.format
    if fmt == "python":
        return mine_python(path, exclude=params.exclude, max_files=params.max_files)
    assert path is not None
    if fmt == "squad":
        return load_squad(path, params.include_unanswerable)
    if fmt == "qmsum":
        return load_qmsum(path)
    if fmt == "meetingbank":
        return load_meetingbank(path)
    if fmt == "codesearchnet":
        return load_codesearchnet(path)
    if fmt == "shared":
        return load_shared(path)
    return load_table(path, fmt, params.fields)


def load_source(params: IngestParams, task: str, root: Path = Path(".")) -> list[Record]:
    """Read the configured source into raw records (Example-shaped dicts with ``task`` set)."""
    expected = FORMAT_TASKS.get(params.format)
    if expected is not None and expected != task:
        raise SourceError(
            f"ingest.format '{params.format}' produces '{expected}' data but base.task is "
            f"'{task}'; set ingest.format/path for this task"
        )
    spec = params.path
    with tempfile.TemporaryDirectory(prefix="taco-ingest-") as tmp:
        if spec is not None and spec.startswith("hf:"):
            rows = list(load_hf(params))
        else:
            local = None
            if spec is not None and spec.startswith(("http://", "https://")):
                local = download(spec, Path(tmp))
            elif spec is not None:
                local = Path(spec).expanduser()
                local = local if local.is_absolute() else root / local
            rows = list(load_local(params, local))
    if not rows:
        raise SourceError(f"source {spec or 'python stdlib'} ({params.format}) yielded no records")
    return [{**row, "task": task} for row in rows]


def ingest(params: Params, root: Path = Path(".")) -> dict[str, Any]:
    """Write the raw snapshot (records.jsonl + snapshot.json) and return the snapshot summary."""
    task = params.base.task
    rows = load_source(params.ingest, task, root)
    body = dump_jsonl(rows)
    snapshot = {
        "task": task,
        "format": params.ingest.format,
        "path": params.ingest.path or "python-stdlib",
        "records": len(rows),
        "groups": len({r["group"] for r in rows}),
        "python": platform.python_version() if params.ingest.format == "python" else None,
        "sha256": hashlib.sha256(body.encode("utf-8")).hexdigest(),
    }
    out = Layout.of(params, root).raw_dir
    write_atomic(out / RAW_RECORDS, body)
    write_atomic(out / RAW_SNAPSHOT, json.dumps(snapshot, indent=2) + "\n")
    log.info("ingest: %d %s records in %d groups -> %s", len(rows), task, snapshot["groups"], out)
    return snapshot


def run(params: Params, root: Path = Path(".")) -> dict[str, Any]:
    """The ``ingest`` stage: write the raw snapshot; returns ``snapshot.json``'s content."""
    return ingest(params, root)
