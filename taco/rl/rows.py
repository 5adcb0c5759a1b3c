"""Training rows: prepared examples joined with their teacher outputs; the seeded batch order."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from taco.config import Params
from taco.data.files import read_examples
from taco.data.schema import Example
from taco.errors import UserError
from taco.layout import Layout
from taco.tasks.teacher import read_teacher_outputs


class TrainError(UserError, ValueError):
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
    layout = Layout.of(params, root)
    split = layout.split(split_name)
    teacher = layout.teacher_split(split_name)
    examples = read_examples(split)
    outputs = read_teacher_outputs(teacher)
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
