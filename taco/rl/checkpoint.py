"""Checkpoints, run fingerprints and the run record (git commit, DVC data versions) of training."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from taco.layout import CHECKPOINT, RUN_RECORD
from taco.rl.rows import TrainRow

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------- rows


def file_digest(paths: Sequence[Path]) -> str:
    h = hashlib.sha256()
    for p in paths:
        if p.is_file():
            with p.open("rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    h.update(block)
    return h.hexdigest()


def run_fingerprint(config: dict[str, Any], rows: Sequence[TrainRow], start: Path | None) -> str:
    """What a checkpoint must match to be resumed: config, training rows, start weights."""
    h = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode())
    for r in rows:
        h.update(f"{r.example.id}\x1f{r.teacher}\x1f{r.context_tokens}\x1e".encode())
    if start is not None:
        h.update(
            file_digest([*sorted(start.glob("*.safetensors")), start / "config.json"]).encode()
        )
    return h.hexdigest()[:20]


# ---------------------------------------------------------------------------- checkpoints


def save_checkpoint(folder: Path, state: dict[str, Any]) -> Path:
    """torch.save to a temp file, then rename (a kill -9 leaves the previous one intact)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / CHECKPOINT
    tmp = folder / f".{CHECKPOINT}.tmp-{os.getpid()}"
    torch.save(state, tmp)
    os.replace(tmp, path)
    return path


def load_checkpoint(folder: Path, fingerprint: str) -> dict[str, Any] | None:
    """The last checkpoint when it belongs to this run (same fingerprint), else None."""
    path = folder / CHECKPOINT
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # a torn or foreign file must not stop a fresh run
        log.warning("ignoring unreadable checkpoint %s (%s)", path, exc)
        return None
    if state.get("fingerprint") != fingerprint:
        log.info("checkpoint %s is from another run (config, data or start model differ)", path)
        return None
    return state


def rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ---------------------------------------------------------------------------- distributed


def weights_digest(model: torch.nn.Module) -> str:
    """SHA-256 of every parameter's bytes (identical weights ⇔ identical digest)."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().float().cpu().numpy().tobytes())
    return h.hexdigest()


# ----------------------------------------------------------------------------- run record


def git_commit(root: Path) -> str | None:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10
        )
        if out.returncode == 0:
            return out.stdout.strip()
    return None


def data_versions(root: Path) -> dict[str, str]:
    """Output hashes of the data stages in dvc.lock (path → md5), if the lock exists."""
    import yaml

    lock = root / "dvc.lock"
    if not lock.is_file():
        return {}
    stages = (yaml.safe_load(lock.read_text(encoding="utf-8")) or {}).get("stages", {})
    out = {}
    for name in ("ingest", "prepare", "teacher", "warmstart"):
        for o in stages.get(name, {}).get("outs", []) or []:
            if "md5" in o:
                out[o["path"]] = o["md5"]
    return out


def save_model_atomic(
    compressor: Any | None, out: Path, record: dict[str, Any], record_name: str = RUN_RECORD
) -> None:
    """Weights + tokenizer (unless ``compressor`` is None) + the run record ``record_name``
    into a temp folder, then renamed to ``out`` (a reader never sees half a model)."""
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    if compressor is not None:
        compressor.save_pretrained(tmp)
    (tmp / record_name).write_text(
        json.dumps(record, indent=2, default=str) + "\n", encoding="utf-8"
    )
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)


def is_compressor(name_or_path: str | os.PathLike[str] | None) -> bool:
    """True when the folder holds a 2-label token classifier (a trained compressor)."""
    if name_or_path is None:
        return False
    cfg = Path(name_or_path) / "config.json"
    if not cfg.is_file():
        return False
    data = json.loads(cfg.read_text(encoding="utf-8"))
    archs = data.get("architectures") or []
    labels = len(data.get("id2label") or {}) or data.get("num_labels", 2)
    return any(a.endswith("ForTokenClassification") for a in archs) and labels == 2
