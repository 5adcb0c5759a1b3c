"""Real DVC in a temporary git repository: repro twice, push, wipe, restore, failed gate."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.helpers.paths import ROOT

pytestmark = pytest.mark.slow


def run(cmd: list[str], cwd: Path, ok: bool = True) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "DVC_NO_ANALYTICS": "1",
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
    }
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if ok:
        assert proc.returncode == 0, f"{cmd}: {proc.stdout}\n{proc.stderr}"
    return proc


def dvc(*args: str, cwd: Path, ok: bool = True) -> subprocess.CompletedProcess[str]:
    return run([sys.executable, "-m", "dvc", *args], cwd, ok)


def taco(*args: str, cwd: Path, ok: bool = True) -> subprocess.CompletedProcess[str]:
    return run([sys.executable, "-m", "taco", *args], cwd, ok)


def git(*args: str, cwd: Path) -> str:
    return run(["git", *args], cwd).stdout.strip()


def set_params(repo: Path, section: str, **values: object) -> None:
    path = repo / "params.yaml"
    params = yaml.safe_load(path.read_text())
    params[section].update(values)
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def files(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()
    }


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A git + DVC project with this repo's taco, dvc.yaml and params (stdlib subset)."""
    base = tmp_path_factory.mktemp("dvc")
    repo = base / "repo"
    repo.mkdir()
    shutil.copytree(ROOT / "taco", repo / "taco", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("dvc.yaml", "params.yaml", ".dvcignore"):
        shutil.copy(ROOT / name, repo / name)
    git("init", "-q", cwd=repo)
    dvc("init", "-q", cwd=repo)
    dvc("config", "core.analytics", "false", cwd=repo)
    set_params(repo, "ingest", max_files=40, remote=str(base / "remote"))
    git("add", "-A", cwd=repo)
    git("commit", "-qm", "project", cwd=repo)
    return repo


def test_repro_runs_the_three_stages_then_skips_them(repo: Path) -> None:
    first = dvc("repro", "validate", cwd=repo)
    for stage in ("ingest", "prepare", "validate"):
        assert f"Running stage '{stage}'" in first.stdout
    lock = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    assert set(lock) == {"ingest", "prepare", "validate"}
    assert lock["ingest"]["outs"][0]["path"] == "data/raw/code"
    assert lock["ingest"]["outs"][0]["md5"].endswith(".dir")
    assert json.loads((repo / "data/reports/validation.json").read_text())["success"]
    snapshot = json.loads((repo / "data/raw/code/snapshot.json").read_text())
    assert snapshot["python"] and snapshot["records"] > 100
    second = dvc("repro", "validate", cwd=repo)
    for stage in ("ingest", "prepare", "validate"):
        assert f"Stage '{stage}' didn't change, skipping" in second.stdout
    assert "Running stage" not in second.stdout
    metrics = dvc("metrics", "show", "--json", cwd=repo).stdout
    assert "dropped_share" in metrics
    git("add", "-A", cwd=repo)
    git("commit", "-qm", "data v1", cwd=repo)


def test_push_wipe_cache_restore_is_byte_identical(repo: Path) -> None:
    raw = repo / "data/raw/code"
    before = files(raw)
    out = taco("data", "push", cwd=repo).stdout
    remote = Path(yaml.safe_load((repo / "params.yaml").read_text())["ingest"]["remote"])
    assert str(remote) in out and any((remote / "files" / "md5").iterdir())
    shutil.rmtree(repo / ".dvc" / "cache")
    shutil.rmtree(raw)
    taco("data", "restore", "--rev", "HEAD", cwd=repo)
    assert files(raw) == before
    assert "ingest:" not in dvc("status", cwd=repo).stdout  # the lock matches the data again

    clone = repo.parent / "clone"  # a fresh clone has the lock but no data and no cache
    git("clone", "-q", str(repo), str(clone), cwd=repo.parent)
    assert not (clone / "data/raw/code").exists()
    taco("data", "restore", cwd=clone)
    assert files(clone / "data/raw/code") == before


def test_restore_an_earlier_version_and_the_remote_keeps_it(repo: Path) -> None:
    v1_rev = git("rev-parse", "HEAD", cwd=repo)
    v1 = files(repo / "data/raw/code")
    v1_hash = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]["ingest"]["outs"][0]["md5"]
    set_params(repo, "ingest", max_files=30)
    dvc("repro", "validate", cwd=repo)
    git("add", "-A", cwd=repo)
    git("commit", "-qm", "data v2", cwd=repo)
    taco("data", "push", cwd=repo)
    v2 = files(repo / "data/raw/code")
    assert v2 != v1
    shutil.rmtree(repo / ".dvc" / "cache")
    taco("data", "restore", "--rev", v1_rev, "--out", "old", cwd=repo)
    assert files(repo / "old") == v1
    taco("data", "restore", "--rev", v1_hash, "--out", "by-hash", cwd=repo)
    assert files(repo / "by-hash") == v1
    assert files(repo / "data/raw/code") == v2  # the working snapshot was not touched
    assert not list(repo.glob(".taco-restore-*"))


def test_failed_validation_stops_the_run_and_the_remote_is_untouched(repo: Path) -> None:
    remote = Path(yaml.safe_load((repo / "params.yaml").read_text())["ingest"]["remote"])
    remote_before = files(remote)
    lock_before = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]["validate"]
    set_params(repo, "validate", min_rows={"train": 100000, "val": 1, "test": 1})
    proc = dvc("repro", "validate", cwd=repo, ok=False)
    assert proc.returncode != 0
    assert "expect_table_row_count_to_be_between" in proc.stdout + proc.stderr
    assert yaml.safe_load((repo / "dvc.lock").read_text())["stages"]["validate"] == lock_before
    refused = taco("data", "push", cwd=repo, ok=False)
    assert refused.returncode == 2
    assert refused.stderr.startswith("taco: error:") and "validation failed" in refused.stderr
    assert files(remote) == remote_before
