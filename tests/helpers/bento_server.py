"""A real `bentoml serve` on 127.0.0.1 and a free port, in its own process group, stopped
by that group's id (tests and bench/serve_load.py)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import httpx


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class BentoServer:
    """``bentoml serve TARGET`` (a bento tag, or ``module:Class``) with ``args``; the log goes
    to ``log_path``. Entering waits until ``/readyz`` answers 200 (RuntimeError with the
    log's tail when the process dies or ``ready_timeout_s`` passes)."""

    def __init__(
        self,
        target: str,
        *,
        env: Mapping[str, str],
        cwd: Path,
        log_path: Path,
        args: Sequence[str] = (),
        ready_timeout_s: float = 300.0,
    ) -> None:
        self.target = target
        self.env = dict(env)
        self.cwd = cwd
        self.log_path = log_path
        self.args = list(args)
        self.ready_timeout_s = ready_timeout_s
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def log_tail(self, lines: int = 30) -> str:
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> BentoServer:
        cmd = [sys.executable, "-m", "bentoml", "serve", self.target]
        cmd += ["--host", "127.0.0.1", "--port", str(self.port), *self.args]
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                cmd,
                cwd=self.cwd,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stopped as a whole
            )
        deadline = time.monotonic() + self.ready_timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"bentoml serve exited:\n{self.log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return self
            time.sleep(0.5)
        self.__exit__()
        tail = self.log_tail()
        raise RuntimeError(f"bentoml serve not ready in {self.ready_timeout_s} s:\n{tail}")

    def __exit__(self, *exc: object) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        pgid = os.getpgid(self.proc.pid)
        os.killpg(pgid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(pgid, signal.SIGKILL)
            self.proc.wait(timeout=10)
