"""taco.overlay: configs/ overlays merge over params.yaml and are validated."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from taco.config import ConfigError, load_params
from taco.overlay import deep_merge, write_overlaid
from tests.helpers.paths import ROOT


def test_deep_merge_replaces_leaves_and_merges_mappings() -> None:
    base = {"train": {"steps": 60, "lr": 1e-5}, "base": {"task": "code"}}
    out = deep_merge(base, {"train": {"steps": 600}, "llm": {"device": "cuda"}})
    assert out == {
        "train": {"steps": 600, "lr": 1e-5},
        "base": {"task": "code"},
        "llm": {"device": "cuda"},
    }
    assert base["train"]["steps"] == 60  # inputs untouched


@pytest.mark.parametrize(
    "name", ["cpu-long.yaml", "code.yaml", "gpu.yaml", "paper.yaml", "squad-vllm.yaml"]
)
def test_shipped_overlays_validate(tmp_path: Path, name: str) -> None:
    out = write_overlaid(ROOT / "params.yaml", [ROOT / "configs" / name], tmp_path / "p.yaml")
    params = load_params(out)
    overlay = yaml.safe_load((ROOT / "configs" / name).read_text())
    for key, value in overlay["train"].items():
        assert getattr(params.train, key) == value
    assert params.validate == load_params(ROOT / "params.yaml").validate  # untouched sections


def test_bad_overlay_is_rejected_and_nothing_written(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: {stepz: 3}\n")
    with pytest.raises(ConfigError, match="stepz"):
        write_overlaid(ROOT / "params.yaml", [bad], tmp_path / "p.yaml")
    assert not list(tmp_path.glob("*p.yaml*"))
