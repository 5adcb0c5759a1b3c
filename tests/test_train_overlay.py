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


def test_the_overlay_command_names_a_missing_or_broken_file(tmp_path: Path) -> None:
    from taco.overlay import main

    out = tmp_path / "p.yaml"
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match=r"nope\.yaml: no such params file"):
        write_overlaid(ROOT / "params.yaml", [missing], out)
    broken = tmp_path / "broken.yaml"
    broken.write_text("train:\n  steps: [3\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"broken\.yaml: line 3 not valid YAML"):
        write_overlaid(ROOT / "params.yaml", [broken], out)
    listed = tmp_path / "list.yaml"
    listed.write_text("- 1\n", encoding="utf-8")
    assert main([str(ROOT / "params.yaml"), str(listed), "-o", str(out)]) == 2
    assert main([str(ROOT / "params.yaml"), str(missing), "-o", str(out)]) == 2
    assert not out.exists()
