"""The embedded default source: function/docstring pairs mined with `ast` from Python sources."""

from __future__ import annotations

import ast
import inspect
import logging
import platform
import re
import sysconfig
import textwrap
import tokenize
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tqdm import tqdm

from taco.errors import UserError

log = logging.getLogger(__name__)

_DEFS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z(`'\"])")
_SECTION = re.compile(r"^(:param|:return|:raises|Args:|Arguments:|Returns:|Raises:|>>>|Example)")


def first_sentence(docstring: str) -> str:
    """The first sentence of a docstring's first paragraph, on one line ('' when none)."""
    lines = []
    for line in inspect.cleandoc(docstring).splitlines():
        if not line.strip() or _SECTION.match(line.strip()):
            break
        lines.append(line.strip())
    paragraph = " ".join(lines)
    return _SENTENCE_END.split(paragraph, maxsplit=1)[0].strip() if paragraph else ""


def _docstring_node(node: ast.AST) -> ast.Expr | None:
    body = getattr(node, "body", None)
    if isinstance(node, _DEFS) and body:
        first = body[0]
        if (
            isinstance(first, ast.Expr)
            and isinstance(first.value, ast.Constant)
            and isinstance(first.value.value, str)
        ):
            return first
    return None


def _without_docstrings(lines: list[str], node: ast.AST, offset: int) -> list[str] | None:
    """Source lines of ``node`` with every docstring inside it removed (None when impossible).

    A docstring that is the only statement of a nested body becomes ``pass``; ``offset`` is the
    line number (1-based) of ``lines[0]``.
    """
    out = list(lines)
    for sub in ast.walk(node):
        doc = _docstring_node(sub)
        if doc is None:
            continue
        start, end = doc.lineno - offset, doc.end_lineno - offset  # type: ignore[operator]
        shares_line = (
            lines[start][: doc.col_offset].strip() or lines[end][doc.end_col_offset :].strip()
        )
        if shares_line:
            return None  # docstring shares a line with code: not worth a fragile edit
        alone = len(sub.body) == 1  # type: ignore[attr-defined]
        if alone and sub is node:
            return None  # the function has nothing but its docstring
        filler = [" " * doc.col_offset + "pass"] if alone else []
        out[start : end + 1] = [None] * (end + 1 - start)  # type: ignore[list-item]
        out[start] = filler[0] if filler else None  # type: ignore[call-overload]
    return [line for line in out if line is not None]


def strip_docstring(code: str, docstring: str = "") -> str:
    """Remove the docstrings from a function's source; a textual fallback when it does not parse."""
    source = textwrap.dedent(code)
    try:
        tree = ast.parse(source)
    except SyntaxError:
        tree = None
    if tree is not None and tree.body and isinstance(tree.body[0], _DEFS):
        kept = _without_docstrings(source.splitlines(), tree.body[0], 1)
        if kept is not None:
            return "\n".join(kept)
    # Python 2 or odd layout: drop the first string literal that holds the docstring text.
    pattern = re.compile(r"[ \t]*[rRuUbB]*(\"\"\"|'''|\"|')(.*?)\1[ \t]*\n?", re.DOTALL)
    for match in pattern.finditer(source):
        if docstring.strip()[:40] in match.group(2):
            return (source[: match.start()] + source[match.end() :]).rstrip()
    return source


def _dedentable(lines: list[str]) -> bool:
    """True when no line is indented less than the first (so dedenting keeps valid code)."""
    indent = lines[0][: len(lines[0]) - len(lines[0].lstrip())]
    return all(line.startswith(indent) or not line.strip() for line in lines)


def _python_files(root: Path, exclude: tuple[str, ...]) -> list[Path]:
    skip = set(exclude) | {"__pycache__"}
    files = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if skip & set(rel.parts[:-1]) or rel.name.startswith("test_") or rel.stem in skip:
            continue
        files.append(path)
    return files


def _walk_defs(tree: ast.AST, prefix: str = "") -> Iterator[tuple[str, ast.AST]]:
    """(qualified name, node) of every function, methods and nested ones included."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, _DEFS):
            name = f"{prefix}{node.name}"
            if not isinstance(node, ast.ClassDef):
                yield name, node
            yield from _walk_defs(node, f"{name}.")
        else:
            yield from _walk_defs(node, prefix)


def mine_file(path: Path, rel: str, label: str) -> Iterator[dict[str, Any]]:
    """Function/docstring records of one file (docstrings removed from the code)."""
    try:
        with tokenize.open(path) as fh:
            text = fh.read()
        tree = ast.parse(text, filename=str(path))
    except (SyntaxError, UnicodeDecodeError, ValueError) as exc:
        log.debug("miner: skipping %s (%s)", path, exc)
        return
    lines = text.splitlines()
    for qualname, node in _walk_defs(tree):
        doc = ast.get_docstring(node)
        reference = first_sentence(doc) if doc else ""
        if not reference:
            continue
        start = node.lineno  # the `def` line (decorators are left out)
        kept = _without_docstrings(lines[start - 1 : node.end_lineno], node, start)
        if kept is None or not _dedentable(kept):  # e.g. a multi-line string at column 0
            continue
        code = textwrap.dedent("\n".join(kept)).strip("\n")
        yield {
            "id": f"py:{rel}::{qualname}:{start}",
            "context": code,
            "question": "",
            "references": [reference],
            "group": rel,
            "source": f"{label} {rel}:{start}",
        }


def mine_python(
    root: Path | None = None,
    *,
    exclude: tuple[str, ...] = (),
    max_files: int | None = None,
) -> Iterator[dict[str, Any]]:
    """Mine a Python source tree (default: the running Python's standard library).

    Deterministic: files in sorted order, functions in source order. Tests, ``exclude``d
    folders and files whose name starts with ``test_`` are skipped.
    """
    if root is None:
        root = Path(sysconfig.get_paths()["stdlib"])
        label = f"python-{platform.python_version()} stdlib"
    else:
        label = f"python source {root.name}"
    if not root.is_dir():
        raise UserError(f"python source tree not found: {root}")
    files = _python_files(root, exclude)[:max_files]
    for path in tqdm(files, desc="mining", unit="file", disable=None, leave=False):
        yield from mine_file(path, path.relative_to(root).as_posix(), label)
