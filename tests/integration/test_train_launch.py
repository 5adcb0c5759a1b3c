"""`taco train` with train.nproc_per_node: 2 relaunches itself under torchrun (gloo on CPU)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.helpers.paths import run_taco
from tests.helpers.tiny_causal_lm import tiny_causal_lm_folder
from tests.helpers.training import train_setup


@pytest.mark.slow
def test_nproc_per_node_runs_the_stage_under_torchrun(tmp_path: Path) -> None:
    path = train_setup(tmp_path, train={"steps": 2, "prompts_per_step": 4, "nproc_per_node": 2})
    sections = yaml.safe_load(path.read_text())
    lm = tiny_causal_lm_folder(tmp_path / "lm")
    sections["llm"] = {"model": str(lm), "device": "cpu", "dtype": "float32", "cache": False}
    path.write_text(yaml.safe_dump(sections))
    out = run_taco("train", "--no-progress", "--params", str(path), cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "launching 2 processes" in out.stderr and "torch.distributed.run" in out.stderr
    run = json.loads((tmp_path / "data/models/taco/taco_run.json").read_text())
    assert run["world_size"] == 2 and run["steps"] == 2
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert summary["steps"] == 2
    assert not list(tmp_path.glob(".taco-train-params-*"))  # the ranks' params file is gone
