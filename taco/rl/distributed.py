"""Data-parallel training under ``torchrun``: ranks, gradient all-reduce, parameter broadcast."""

from __future__ import annotations

import dataclasses
import logging
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

log = logging.getLogger(__name__)


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
    from taco.device import resolve_device

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


def under_torchrun() -> bool:
    """True inside a process that torchrun (or another launcher setting LOCAL_RANK) started."""
    return "LOCAL_RANK" in os.environ


def launch(nproc: int, args: Sequence[str], cwd: Path) -> int:
    """Run ``python -m torch.distributed.run --standalone --nproc_per_node=NPROC -m taco ARGS``
    in ``cwd`` (one rendezvous on this machine, one process per GPU) and return its exit code.
    The ranks write to this process's stdout and stderr."""
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={nproc}",
        "-m",
        "taco",
        *args,
    ]
    log.info("launching %d processes: %s", nproc, " ".join(cmd))
    return subprocess.run(cmd, cwd=cwd, check=False).returncode
