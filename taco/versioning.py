"""DVC helpers: configure the remote, push validated snapshots, restore an earlier raw snapshot."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

from taco.config import Params
from taco.errors import UserError
from taco.layout import Layout

log = logging.getLogger(__name__)

REMOTE_NAME = "taco"
_HASH = re.compile(r"^[0-9a-f]{32}(\.dir)?$")


class VersioningError(UserError):
    """A DVC or git step failed; the message says which and why."""


def _run(cmd: list[str], root: Path, what: str) -> str:
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()
        raise VersioningError(f"{what} failed: {tail[-1] if tail else f'exit {proc.returncode}'}")
    return proc.stdout


def dvc(args: list[str], root: Path, what: str | None = None) -> str:
    """Run the DVC of this Python environment in ``root``; raise VersioningError on failure."""
    return _run([sys.executable, "-m", "dvc", *args], root, what or f"dvc {' '.join(args)}")


def remote_url(spec: str, root: Path) -> str:
    """An URL DVC understands: cloud URLs as given, local paths made absolute against ``root``."""
    if re.match(r"^[a-z][a-z0-9+.-]*://", spec):
        return spec
    path = Path(spec).expanduser()
    return str((path if path.is_absolute() else root / path).resolve())


def ensure_remote(params: Params, root: Path) -> str:
    """Point the default DVC remote at ``ingest.remote`` (in .dvc/config.local); return its URL."""
    url = remote_url(params.ingest.remote, root)
    if "://" not in url:
        Path(url).mkdir(parents=True, exist_ok=True)
    dvc(["remote", "add", "--local", "--force", "--default", REMOTE_NAME, url], root)
    return url


def push(params: Params, root: Path, *, force: bool = False) -> str:
    """Push every DVC-tracked output in dvc.lock to the remote, after a passing validation.

    Content-addressed: earlier versions on the remote are never overwritten or deleted.
    """
    report = Layout.of(params, root).validation_report
    if not force:
        if not report.exists():
            raise VersioningError(f"{report} not found: run `dvc repro validate` before pushing")
        if not json.loads(report.read_text(encoding="utf-8")).get("success"):
            raise VersioningError(f"{report} says validation failed; not pushing (use --force)")
    url = ensure_remote(params, root)
    out = dvc(["push", "--remote", REMOTE_NAME], root, "dvc push")
    log.info("pushed to %s: %s", url, out.strip().splitlines()[-1] if out.strip() else "")
    return url


def raw_out(params: Params, root: Path, rev: str | None) -> dict[str, Any]:
    """The dvc.lock entry of the raw snapshot at git ``rev`` (or a bare DVC hash; None = the
    working tree's dvc.lock)."""
    target = Layout.of(params, root).raw_relpath
    if rev is not None and _HASH.match(rev):
        md5 = rev if rev.endswith(".dir") else f"{rev}.dir"
        return {"md5": md5, "hash": "md5", "path": target}
    if rev is None:
        lock = root / "dvc.lock"
        if not lock.is_file():
            raise VersioningError(f"{lock} not found: run the pipeline (dvc repro) first")
        text = lock.read_text(encoding="utf-8")
    else:
        text = _run(["git", "show", f"{rev}:dvc.lock"], root, f"reading dvc.lock at {rev}")
    entry = _ingest_out(text, target)
    if entry is None:
        raise VersioningError(
            f"dvc.lock at {rev or 'the working tree'} has no ingest output {target}"
        )
    return entry


def _ingest_out(lock_text: str, target: str) -> dict[str, Any] | None:
    stages = (yaml.safe_load(lock_text) or {}).get("stages", {})
    for out in stages.get("ingest", {}).get("outs", []):
        if out.get("path") == target:
            return dict(out)
    return None


def data_version(params: Params, root: Path) -> str | None:
    """The raw snapshot's DVC hash (``<md5>.dir``) in the working tree's dvc.lock: the data
    version of the last ``dvc repro ingest``; None (logged) before the first one."""
    try:
        return str(raw_out(params, root, None)["md5"])
    except VersioningError as exc:
        log.info("no data version yet: %s", exc)
        return None


def restore(params: Params, root: Path, rev: str = "HEAD", out: Path | None = None) -> Path:
    """Bring back the raw snapshot recorded at ``rev`` from the remote (a fresh clone works).

    The data goes to ``out`` (default: the snapshot's own path, replaced in place). dvc.lock
    and the remote are left as they are; DVC's cache gets the snapshot's objects.
    """
    entry = raw_out(params, root, rev)
    ensure_remote(params, root)
    dest = out if out is not None else root / entry["path"]
    dest = dest if dest.is_absolute() else root / dest
    scratch = Path(tempfile.mkdtemp(prefix=".taco-restore-", dir=root))
    try:
        name = "snapshot"
        stub = {"outs": [{**{k: v for k, v in entry.items() if k != "path"}, "path": name}]}
        dvc_file = scratch / f"{name}.dvc"
        dvc_file.write_text(yaml.safe_dump(stub, sort_keys=False), encoding="utf-8")
        dvc(["pull", "--remote", REMOTE_NAME, str(dvc_file.relative_to(root))], root, "dvc pull")
        staged = dest.with_name(f".{dest.name}.restoring")
        shutil.rmtree(staged, ignore_errors=True)
        shutil.copytree(scratch / name, staged)
        old = dest.with_name(f".{dest.name}.old")
        if dest.exists():
            shutil.rmtree(old, ignore_errors=True)
            dest.rename(old)
        staged.rename(dest)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    log.info("restored raw snapshot %s (rev %s) -> %s", entry["md5"], rev, dest)
    return dest
