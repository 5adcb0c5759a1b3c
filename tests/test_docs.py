"""Docstrings and configs cite sections of docs/algorithm.md that exist, and no file that is
not in the repository."""

from __future__ import annotations

import re

from tests.helpers.paths import ROOT

CITED = re.compile(r"docs/algorithm\.md §(\d+)")


def cited_files() -> list:
    return [
        *sorted((ROOT / "taco").rglob("*.py")),
        *sorted((ROOT / "configs").glob("*.yaml")),
        *sorted((ROOT / "bench").glob("*.py")),
        ROOT / "params.yaml",
    ]


def test_cited_sections_exist() -> None:
    text = (ROOT / "docs" / "algorithm.md").read_text(encoding="utf-8")
    headings = set(re.findall(r"^## §(\d+) ", text, flags=re.MULTILINE))
    assert headings, "docs/algorithm.md has no numbered sections"
    cited = {
        (path.relative_to(ROOT).as_posix(), n)
        for path in cited_files()
        for n in CITED.findall(path.read_text(encoding="utf-8"))
    }
    assert cited, "nothing cites docs/algorithm.md"
    missing = sorted((f, n) for f, n in cited if n not in headings)
    assert not missing, f"citations of sections docs/algorithm.md does not have: {missing}"


def test_no_citation_of_files_outside_the_repository() -> None:
    stale = [
        path.relative_to(ROOT).as_posix()
        for path in cited_files()
        if "ALGORITHM.md" in path.read_text(encoding="utf-8")
    ]
    assert not stale, f"cite docs/algorithm.md instead of ALGORITHM.md: {stale}"
