"""Where the repository and the shared real data are, and `python -m taco` as a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SHARED_DATA = ROOT.parent / "shared" / "data"


def shared_data(task: str) -> Path:
    """Path of ../shared/data/<task>/dev.jsonl; skips the test with a reason when absent."""
    path = SHARED_DATA / task / "dev.jsonl"
    if not path.exists():
        pytest.skip(f"shared test data not found: {path}")
    return path


def run_taco(
    *args: str, cwd: Path | None = None, stdin: str | None = None, unset: Sequence[str] = ()
) -> subprocess.CompletedProcess[str]:
    """Run `python -m taco ARGS` as a real subprocess (taco importable from any cwd), without
    the environment variables named in ``unset``."""
    env = {k: v for k, v in os.environ.items() if k not in unset} | {"PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "taco", *args],
        cwd=cwd,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
