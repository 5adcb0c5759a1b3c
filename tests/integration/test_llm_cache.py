"""The SQLite LLM cache: keys, counters, None never stored, several processes on one file."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from taco.llm.base import LLM, CachedLLM
from taco.llm.cache import LLMCache, cache_dir, cache_key, default_cache_path, set_wal
from tests.helpers.paths import ROOT


class ScriptedLLM(LLM):
    """Answers from a dict; prompts missing from it fail (None). Counts what it was asked."""

    def __init__(self, answers: Mapping[str, str]) -> None:
        self.answers = dict(answers)
        self.asked: list[str] = []

    @property
    def identity(self) -> Mapping[str, Any]:
        return {"backend": "scripted", "model": "v1"}

    def generate(
        self, prompts: Sequence[str], max_new_tokens: int | None = None
    ) -> list[str | None]:
        self.asked.extend(prompts)
        return [self.answers.get(p) for p in prompts]

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return [len(t.split()) for t in texts]


def test_cache_dir_follows_taco_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TACO_CACHE_DIR", str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c"
    assert default_cache_path() == tmp_path / "c" / "llm-cache.sqlite"
    monkeypatch.delenv("TACO_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "taco"


def test_keys_depend_on_everything_that_changes_an_answer() -> None:
    ident = {"backend": "local", "model": "m"}
    base = cache_key("generate", ident, "p", {"max_new_tokens": 32})
    assert base == cache_key("generate", dict(ident), "p", {"max_new_tokens": 32})
    assert base != cache_key("generate", ident, "p", {"max_new_tokens": 16})
    assert base != cache_key("generate", {**ident, "model": "m2"}, "p", {"max_new_tokens": 32})
    assert base != cache_key("generate", ident, "p ", {"max_new_tokens": 32})
    assert base != cache_key("loglik", ident, "p", {"max_new_tokens": 32})


def test_roundtrip_and_counters(tmp_path: Path) -> None:
    cache = LLMCache(tmp_path / "c.sqlite")
    cache.put_many({"a": "x", "b": -1.5, "c": "ünïcode ✓"})
    assert cache.get_many(["a", "b", "c", "zz"]) == {"a": "x", "b": -1.5, "c": "ünïcode ✓"}
    assert (cache.stats.hits, cache.stats.misses) == (3, 1)
    assert cache.stats.as_metrics()["llm/cache_hit_rate"] == 0.75
    assert len(cache) == 3


def test_failed_answers_are_not_cached_and_are_asked_again(tmp_path: Path) -> None:
    inner = ScriptedLLM({"good": "yes"})
    llm = CachedLLM(inner, LLMCache(tmp_path / "c.sqlite"))
    assert llm.generate(["good", "bad"]) == ["yes", None]
    assert llm.generate(["good", "bad"]) == ["yes", None]
    assert inner.asked == ["good", "bad", "bad"]
    inner.answers["bad"] = "now fine"
    assert llm.generate(["bad"]) == ["now fine"]
    assert llm.metrics()["llm/calls"] == 4.0  # good, bad, bad, bad


_WORKER = textwrap.dedent(
    """
    import sys
    from taco.llm.cache import LLMCache
    path, tag, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    cache = LLMCache(path)
    for i in range(n):  # many small transactions, interleaved with the other process
        cache.put_many({f"{tag}-{i}": f"value {tag} {i}", f"shared-{i}": "same"})
    found = cache.get_many([f"{tag}-{i}" for i in range(n)])
    assert len(found) == n, len(found)
    print(cache.stats.hits)
    """
)


def test_two_processes_share_one_cache_file(tmp_path: Path) -> None:
    path = tmp_path / "shared.sqlite"
    n = 150
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, str(path), tag, str(n)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for tag in ("A", "B")
    ]
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        assert out.strip() == str(n)
    cache = LLMCache(path)
    keys = [f"{tag}-{i}" for tag in "AB" for i in range(n)] + [f"shared-{i}" for i in range(n)]
    found = cache.get_many(keys)
    assert len(found) == 3 * n
    assert found["A-7"] == "value A 7" and found["B-149"] == "value B 149"
    # a third process reads what the first two wrote: all hits
    reader = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from taco.llm.cache import LLMCache; c = LLMCache(sys.argv[1]); "
            "c.get_many([f'A-{i}' for i in range(150)]); print(c.stats.hits, c.stats.misses)",
            str(path),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert reader.stdout.split() == [str(n), "0"]


class _LockedFor:
    """A real connection that answers "database is locked" to its first ``n`` statements (the
    immediate SQLITE_BUSY of two processes converting one fresh file to WAL at once)."""

    def __init__(self, conn: sqlite3.Connection, n: int) -> None:
        self.conn, self.n, self.calls = conn, n, 0

    def execute(self, sql: str) -> sqlite3.Cursor:
        self.calls += 1
        if self.calls <= self.n:
            raise sqlite3.OperationalError("database is locked")
        return self.conn.execute(sql)


def test_the_wal_switch_retries_a_locked_file_until_its_timeout(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "c.sqlite", isolation_level=None)
    flaky = _LockedFor(conn, 3)
    set_wal(flaky, 5.0, pause_s=0.001)  # type: ignore[arg-type]
    assert flaky.calls == 4
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        set_wal(_LockedFor(conn, 10**9), 0.05, pause_s=0.001)  # type: ignore[arg-type]
    conn.close()
