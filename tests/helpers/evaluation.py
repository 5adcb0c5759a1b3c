"""A tiny evaluation project: real test rows, the tiny causal LM as target LLM (real teacher
outputs through the teacher stage), a tiny trained-format compressor with its run record."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.helpers.tiny_causal_lm import tiny_causal_lm_folder
from tests.helpers.training import tiny_encoder_folder, write_params, write_prepared


def eval_params(root: Path, task: str = "code", **sections: dict[str, Any]) -> dict[str, Any]:
    """Params sections of the tiny project (``sections`` are merged over each section)."""
    base: dict[str, Any] = {
        "base": {"task": task, "data_dir": "data", "seed": 0},
        "llm": {
            "model": str(root / "lm"),
            "dtype": "float32",
            "device": "cpu",
            "max_new_tokens": 8,
            "cache_path": str(root / "llm-cache.sqlite"),
        },
        "teacher": {"splits": ["test"]},
        "train": {"device": "cpu", "max_seq_len": 128},
        "evaluate": {"bootstrap_samples": 200, "examples": 2},
    }
    for name, values in sections.items():
        base[name] = {**base.get(name, {}), **values}
    return base


def eval_setup(
    root: Path, *, task: str = "code", n_rows: int = 6, **sections: dict[str, Any]
) -> Path:
    """Write the tiny project under ``root``; returns its params.yaml."""
    from taco.config import load_params
    from taco.tasks.teacher import run_teacher

    tiny_causal_lm_folder(root / "lm", chat=True)
    write_prepared(root, task, n_rows, split="test")
    start = tiny_encoder_folder(root / "start")  # a bare encoder: training starts from it
    trained = tiny_encoder_folder(root / "data" / "models" / "taco", classifier=True, seed=1)
    record = {"start_model": str(start), "config": {"train": {"unit": "word", "position_prior": 0}}}
    (trained / "taco_run.json").write_text(json.dumps(record), encoding="utf-8")
    (root / "data" / "models" / "warmstart").mkdir(parents=True, exist_ok=True)
    path = write_params(root, eval_params(root, task, **sections))
    run_teacher(load_params(path), splits=["test"], root=root)
    return path
