"""taco.pipeline.run_stage against real DVC: a summary, a skip on rerun, a run's settings in
dvc.lock, and the three ways a stage can end badly (no, bad input, crash)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
import yaml

from taco import pipeline
from taco.errors import StageFailed, UserError
from tests.helpers.paths import ROOT
from tests.helpers.workspace import git, run

STAGES = {
    "ok": "import json; print(open('in.txt').read().strip()); print(json.dumps({'rows': 3}))",
    "no": "import sys; print('taco: failed: validation said no', file=sys.stderr); sys.exit(1)",
    "bad": "import sys; print('taco: error: train.steps: 0 is outside', file=sys.stderr); "
    "sys.exit(2)",
    "crash": "import os, signal; os.kill(os.getpid(), signal.SIGKILL)",
}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    (tmp_path / "in.txt").write_text("hello\n", encoding="utf-8")
    stages = {
        name: {"cmd": f'python -c "{code}"', "deps": ["in.txt"], "params": ["train.steps"]}
        for name, code in STAGES.items()
    }
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump({"stages": stages}), encoding="utf-8")
    git("init", "-q", cwd=tmp_path)
    run([sys.executable, "-m", "dvc", "init", "-q"], tmp_path)
    return tmp_path


def test_a_stage_runs_then_is_skipped_and_a_runs_settings_reach_dvc_lock(project: Path) -> None:
    first = pipeline.run_stage("ok", project)
    assert first["ran"] is True and first["summary"] == {"rows": 3}
    assert first["cpu_seconds"] > 0  # dvc and the stage: children of this process
    again = pipeline.run_stage("ok", project)
    assert again["ran"] is False and again["summary"] is None
    third = pipeline.run_stage("ok", project, {"steps": 7, "task": None})
    assert third["ran"] is True
    lock = yaml.safe_load((project / "dvc.lock").read_text(encoding="utf-8"))
    assert lock["stages"]["ok"]["params"]["params.yaml"]["train.steps"] == 7


@pytest.mark.parametrize(
    ("stage", "kind", "message"),
    [
        ("no", StageFailed, "no: validation said no"),
        ("bad", UserError, "bad: train.steps: 0 is outside"),
        ("crash", pipeline.StageCrashed, "crash: killed by SIGKILL"),
    ],
)
def test_a_failed_stage_raises_its_kind_with_its_message(
    project: Path, stage: str, kind: type, message: str
) -> None:
    with pytest.raises(kind) as info:
        pipeline.run_stage(stage, project)
    assert type(info.value) is kind and str(info.value).startswith(message)
    lock = project / "dvc.lock"
    assert not lock.exists() or stage not in yaml.safe_load(lock.read_text())["stages"]


def test_bad_run_settings_fail_before_the_stage_runs(project: Path) -> None:
    before = (project / "params.yaml").read_bytes()
    with pytest.raises(UserError, match=r"train\.steps: 0 is outside the allowed range"):
        pipeline.run_stage("ok", project, {"steps": 0})
    assert (project / "params.yaml").read_bytes() == before
    assert not (project / "dvc.lock").exists()
