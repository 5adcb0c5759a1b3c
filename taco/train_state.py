"""What the training loop keeps outside itself: training rows, checkpoints, ranks, run record."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from taco.config import Params
from taco.schema import Example

log = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.pt"


class TrainError(ValueError):
    """Training cannot start or go on (no rows, missing teacher outputs, too many bad steps)."""


# ---------------------------------------------------------------------------------- rows


@dataclasses.dataclass(frozen=True)
class TrainRow:
    """One prompt: the example, the teacher output y and L_o (context in LLM tokens)."""

    example: Example
    teacher: str
    context_tokens: int


def load_rows(params: Params, root: Path = Path("."), split_name: str = "train") -> list[TrainRow]:
    """Prepared rows of a split joined with their teacher outputs (rows without one are
    dropped); ``train.max_rows`` caps the train split."""
    from taco.teacher import read_examples

    data = root / params.base.data_dir
    task = params.base.task
    split = data / "prepared" / task / f"{split_name}.jsonl"
    teacher = data / "teacher" / task / f"{split_name}.jsonl"
    examples = read_examples(split)
    if not teacher.is_file():
        raise FileNotFoundError(f"teacher outputs not found: {teacher} (run `taco teacher`)")
    outputs: dict[str, tuple[str | None, int]] = {}
    with teacher.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if line.strip():
                try:
                    r = json.loads(line)
                    outputs[r["id"]] = (r.get("output"), int(r["context_tokens"]))
                except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                    raise TrainError(f"{teacher}:{n}: not a teacher row ({exc})") from None
    rows = [
        TrainRow(ex, outputs[ex.id][0] or "", outputs[ex.id][1])
        for ex in examples
        if ex.id in outputs and outputs[ex.id][0]
    ]
    if params.train.max_rows is not None and split_name == "train":
        rows = rows[: params.train.max_rows]
    if not rows:
        raise TrainError(
            f"no training rows: {split} has {len(examples)} examples and {teacher} has "
            f"{sum(1 for v in outputs.values() if v[0])} teacher outputs with matching ids"
        )
    return rows


def batch_indices(n_rows: int, step: int, per_step: int, seed: int) -> list[int]:
    """Row indices of global ``step`` (0-based): epochs of seeded permutations, so any step's
    batch is known without replaying the ones before it (resume needs no sampler state)."""
    out = []
    for i in range(step * per_step, (step + 1) * per_step):
        epoch, pos = divmod(i, n_rows)
        perm = np.random.default_rng([seed, epoch]).permutation(n_rows)
        out.append(int(perm[pos]))
    return out


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


@dataclasses.dataclass(frozen=True)
class Ranks:
    """This process's place in a ``torchrun`` job (rank 0 of 1 without one)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_ranks(device: str) -> tuple[Ranks, torch.device]:
    """Join the process group when started by torchrun (NCCL on GPUs, gloo on CPU)."""
    from taco.compressor import resolve_device

    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device)
    if dev.type == "cuda" and world > 1:
        dev = torch.device("cuda", local)
        torch.cuda.set_device(dev)
    if world > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return Ranks(rank, world, local), dev


def sync_gradients(params: Sequence[torch.nn.Parameter], ranks: Ranks) -> None:
    """Average gradients over ranks in one flat all-reduce (what DDP's reducer does)."""
    if ranks.world == 1:
        return
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1).float() for g in grads])
    torch.distributed.all_reduce(flat)
    flat /= ranks.world
    pos = 0
    for p, g in zip(params, grads, strict=True):
        n = g.numel()
        p.grad = flat[pos : pos + n].view_as(g).to(g.dtype)
        pos += n


def weights_digest(model: torch.nn.Module) -> str:
    """SHA-256 of every parameter's bytes (identical weights ⇔ identical digest)."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().float().cpu().numpy().tobytes())
    return h.hexdigest()


def broadcast_parameters(model: torch.nn.Module, ranks: Ranks) -> None:
    """Start every rank from rank 0's weights."""
    if ranks.world > 1:
        for t in list(model.parameters()) + list(model.buffers()):
            torch.distributed.broadcast(t.data, 0)


def all_sum(values: Sequence[float], ranks: Ranks, device: torch.device) -> list[float]:
    """Sum of each value over ranks (float64)."""
    if ranks.world == 1:
        return list(values)
    t = torch.tensor(list(values), dtype=torch.float64, device=device)
    torch.distributed.all_reduce(t)
    return t.tolist()


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


def save_model_atomic(compressor: Any, out: Path, record: dict[str, Any]) -> None:
    """Weights + tokenizer + ``taco_run.json`` into a temp folder, then renamed to ``out``."""
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    compressor.save_pretrained(tmp)
    (tmp / "taco_run.json").write_text(json.dumps(record, indent=2, default=str) + "\n")
    shutil.rmtree(out, ignore_errors=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, out)
