"""Persistent LLM answer cache: SQLite (WAL) on disk, keyed by backend, model, prompt, decoding."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from taco.layout import cache_dir

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS llm_cache (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    created REAL NOT NULL
)
"""


def default_cache_path() -> Path:
    """The default SQLite file of the LLM cache (``<cache_dir>/llm-cache.sqlite``)."""
    return cache_dir() / "llm-cache.sqlite"


def cache_key(kind: str, identity: Mapping[str, Any], prompt: str, extra: Any = None) -> str:
    """SHA-256 of the request: kind (generate/loglik), backend identity, prompt and extras."""
    payload = json.dumps(
        {"kind": kind, "identity": dict(identity), "prompt": prompt, "extra": extra},
        sort_keys=True,
        ensure_ascii=False,
        default=str,
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def set_wal(conn: sqlite3.Connection, timeout_s: float, *, pause_s: float = 0.05) -> None:
    """Switch ``conn``'s file to WAL, retrying while another process holds it.

    Two processes converting one fresh file at once can deadlock on the upgrade to an
    exclusive lock; SQLite then answers "database is locked" at once, without waiting for
    the busy timeout (seen in a clean-clone test run). Retry until ``timeout_s``.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or time.monotonic() >= deadline:
                raise
            time.sleep(pause_s)


@dataclasses.dataclass
class CacheStats:
    """Hit/miss counters of one cache object (this process only)."""

    hits: int = 0
    misses: int = 0

    @property
    def hit_rate(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0

    def as_metrics(self) -> dict[str, float]:
        """Namespaced metric names for DVCLive / reports."""
        return {
            "llm/cache_hits": float(self.hits),
            "llm/cache_misses": float(self.misses),
            "llm/cache_hit_rate": self.hit_rate,
        }


class LLMCache:
    """A key → JSON value store in one SQLite file, safe for several processes (WAL, busy timeout).

    Each thread gets its own connection; writes are batched into one transaction.
    """

    def __init__(self, path: str | Path, *, timeout_s: float = 60.0) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.timeout_s = timeout_s
        self.stats = CacheStats()
        self._local = threading.local()
        self._lock = threading.Lock()
        with self._connect() as conn:
            conn.execute(_SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=self.timeout_s, isolation_level=None)
            set_wal(conn, self.timeout_s)
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(f"PRAGMA busy_timeout={int(self.timeout_s * 1000)}")
            self._local.conn = conn
        return conn

    def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        """The cached values of ``keys`` that exist (counted as hits; the rest as misses)."""
        keys = list(dict.fromkeys(keys))
        found: dict[str, Any] = {}
        conn = self._connect()
        for start in range(0, len(keys), 500):
            part = keys[start : start + 500]
            marks = ",".join("?" * len(part))
            rows = conn.execute(
                f"SELECT key, value FROM llm_cache WHERE key IN ({marks})", part
            ).fetchall()
            found.update((k, json.loads(v)) for k, v in rows)
        with self._lock:
            self.stats.hits += len(found)
            self.stats.misses += len(keys) - len(found)
        return found

    def put_many(self, items: Mapping[str, Any]) -> None:
        """Store JSON-serialisable values in one transaction (last writer wins)."""
        if not items:
            return
        now = time.time()
        rows = [(k, json.dumps(v, ensure_ascii=False), now) for k, v in items.items()]
        conn = self._connect()
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany("INSERT OR REPLACE INTO llm_cache VALUES (?, ?, ?)", rows)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def __len__(self) -> int:
        return int(self._connect().execute("SELECT COUNT(*) FROM llm_cache").fetchone()[0])

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
