"""The embedded default source: function/docstring pairs mined from the stdlib with `ast`."""

from __future__ import annotations

import ast
import platform
import textwrap
from pathlib import Path

import pytest

from taco.data.miner import first_sentence, mine_python, strip_docstring
from taco.data.schema import Example

EXCLUDE = ("test", "tests", "idlelib", "turtledemo", "lib2to3", "site-packages")


def docstrings_left(code: str) -> list[str]:
    """Names of the functions/classes in ``code`` that still carry a docstring."""
    tree = ast.parse(code)
    return [
        n.name
        for n in ast.walk(tree)
        if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
        and ast.get_docstring(n) is not None
    ]


@pytest.fixture(scope="module")
def stdlib_rows() -> list[dict]:
    return list(mine_python(exclude=EXCLUDE))


def test_full_stdlib_gives_over_a_thousand_clean_pairs(stdlib_rows: list[dict]) -> None:
    assert len(stdlib_rows) > 1000
    assert len({r["id"] for r in stdlib_rows}) == len(stdlib_rows)
    for row in stdlib_rows:
        ex = Example.from_dict({**row, "task": "code"})
        assert ex.context.startswith(("def ", "async def ")), ex.id
        assert docstrings_left(ex.context) == [], ex.id
        assert ex.references[0] and "\n" not in ex.references[0]
    assert all(f"python-{platform.python_version()}" in r["source"] for r in stdlib_rows)
    groups = {r["group"] for r in stdlib_rows}
    assert "json/decoder.py" in groups
    assert not any(g.startswith(("test/", "idlelib/", "lib2to3/")) for g in groups)
    assert not any(Path(g).name.startswith("test_") for g in groups)


def test_mining_is_deterministic() -> None:
    first = list(mine_python(exclude=EXCLUDE, max_files=25))
    second = list(mine_python(exclude=EXCLUDE, max_files=25))
    assert first and first == second


def test_known_stdlib_function(stdlib_rows: list[dict]) -> None:
    rows = [r for r in stdlib_rows if r["id"].startswith("py:textwrap.py::dedent:")]
    assert len(rows) == 1
    assert rows[0]["references"] == [
        "Remove any common leading whitespace from every line in `text`."
    ]
    assert "Remove any common" not in rows[0]["context"]


def test_nested_docstrings_are_removed_and_empty_bodies_get_pass(tmp_path: Path) -> None:
    (tmp_path / "mod.py").write_text(
        textwrap.dedent(
            '''
            def outer(x):
                """Compute the outer thing. More words here."""

                def inner():
                    """Inner docs."""

                class Box:
                    """Only a docstring."""

                return x


            def only_doc():
                """Nothing else."""


            def one_line(): """Shares the def line."""
            '''
        )
    )
    rows = list(mine_python(tmp_path))
    assert [r["id"] for r in rows] == ["py:mod.py::outer:2"]  # inner has no code after its doc
    code = rows[0]["context"]
    assert docstrings_left(code) == []
    assert "Inner docs" not in code and "pass" in code
    assert rows[0]["references"] == ["Compute the outer thing."]
    assert rows[0]["group"] == "mod.py"


def test_first_sentence() -> None:
    assert first_sentence("Return the sum. Then more.") == "Return the sum."
    assert (
        first_sentence("\n    Parse a file\n    into rows.\n\n    Details.")
        == "Parse a file into rows."
    )
    assert first_sentence("Load data.\n\n:param x: thing") == "Load data."
    assert first_sentence("Args:\n  x: y") == ""


def test_strip_docstring_parses_and_falls_back_for_python2() -> None:
    code = 'def f(a):\n    """Doc here."""\n    return a\n'
    assert strip_docstring(code, "Doc here.") == "def f(a):\n    return a"
    py2 = "def g(x):\n    '''Print x.'''\n    print x"
    assert strip_docstring(py2, "Print x.") == "def g(x):\n    print x"
