"""Training rows: prepared examples joined with their teacher outputs; the seeded batch order."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from taco.config import Params
from taco.data.schema import Example


class TrainError(ValueError):
    """Training cannot start or go on (no rows, missing teacher outputs, too many bad steps)."""


@dataclasses.dataclass(frozen=True)
class TrainRow:
    """One prompt: the example, the teacher output y and L_o (context in LLM tokens)."""

    example: Example
    teacher: str
    context_tokens: int


def load_rows(params: Params, root: Path = Path("."), split_name: str = "train") -> list[TrainRow]:
    """Prepared rows of a split joined with their teacher outputs (rows without one are
    dropped); ``train.max_rows`` caps the train split."""
    from taco.tasks.teacher import read_examples

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
