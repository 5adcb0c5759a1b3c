"""taco.pipeline without subprocesses: a run's settings, params.yaml edits, failure kinds,
lineage and summary from a workspace's reports."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from taco import pipeline
from taco.config import ConfigError, load_params
from taco.errors import StageFailed, UserError
from tests.helpers.paths import ROOT


def test_run_overlay_maps_the_dag_params_to_params_yaml_keys() -> None:
    conf = {
        "task": "qa",
        "format": None,
        "source": "../shared/data/qa/dev.jsonl",
        "steps": 5,
        "params": {"train": {"lr": 1e-4}, "base": {"seed": 3}},
    }
    assert pipeline.run_overlay(conf) == {
        "base": {"task": "qa", "seed": 3},
        "ingest": {"path": "../shared/data/qa/dev.jsonl"},
        "train": {"steps": 5, "lr": 1e-4},
    }
    assert pipeline.run_overlay({"task": None, "params": {}}) == {}
    with pytest.raises(ConfigError, match="params must be a mapping"):
        pipeline.run_overlay({"params": [1, 2]})


def test_run_settings_must_be_an_object() -> None:
    with pytest.raises(ConfigError, match="run settings must be a JSON object, got list"):
        pipeline.run_overlay([1, 2])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("conf", "message"),
    [
        ({"step": 3}, "unknown key(s) 'step' (did you mean 'steps'?); allowed: task, format, "),
        ({"bogus": 1, "steps": 3}, "unknown key(s) 'bogus'; allowed: task, format, source, "),
        ({"train": {"steps": 3}}, "allowed: task, format, source, rates, steps, params (params"),
    ],
)
def test_run_overlay_refuses_a_key_that_is_not_a_dag_param(conf: dict, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        pipeline.run_overlay(conf)
    assert message in str(info.value) and "\n" not in str(info.value)


@pytest.fixture
def params_file(tmp_path: Path) -> Path:
    path = tmp_path / "params.yaml"
    shutil.copy(ROOT / "params.yaml", path)
    return path


def test_set_params_keeps_every_comment_and_other_value(params_file: Path) -> None:
    before = params_file.read_text(encoding="utf-8")
    assert pipeline.set_params(params_file, {"train": {"steps": 7}, "base": {"task": "qa"}})
    after = params_file.read_text(encoding="utf-8")
    pairs = zip(before.splitlines(), after.splitlines(), strict=True)
    changed = [(a, b) for a, b in pairs if a != b]
    assert [b.split("#")[0].strip() for _, b in changed] == ["task: qa", "steps: 7"]
    assert all(a.split("#")[1:] == b.split("#")[1:] for a, b in changed)  # comments kept
    params = load_params(params_file)
    assert (params.train.steps, params.base.task) == (7, "qa")
    assert not pipeline.set_params(params_file, {"train": {"steps": 7}})  # already so
    assert not list(params_file.parent.glob(".params.yaml.tmp-*"))


@pytest.mark.parametrize(
    ("overlay", "message"),
    [
        ({"train": {"steps": 0}}, r"train\.steps: 0 is outside the allowed range"),
        ({"train": {"stepz": 3}}, r"unknown key\(s\) stepz"),
        ({"trian": {"steps": 3}}, r"unknown section\(s\) trian"),
        ({"base": {"task": "nope"}}, r"unknown task 'nope'; registered: code, qa, summarization"),
    ],
)
def test_set_params_refuses_a_bad_setting_and_leaves_the_file(
    params_file: Path, overlay: dict, message: str
) -> None:
    before = params_file.read_bytes()
    with pytest.raises(ConfigError, match=message) as info:
        pipeline.set_params(params_file, overlay)
    assert str(info.value).startswith("the run's settings: ")
    assert params_file.read_bytes() == before
    assert not list(params_file.parent.glob(".params.yaml.tmp-*"))


DVC_ERROR = "ERROR: failed to reproduce '{s}': failed to run: python -m taco {s}, exited with {c}"


@pytest.mark.parametrize(
    ("tail", "kind", "message"),
    [
        (
            ["taco: failed: Validation of the code data FAILED: 1 of 42", DVC_ERROR],
            StageFailed,
            "validate: Validation of the code data FAILED: 1 of 42",
        ),
        (
            ["taco: error: llm.model: GGUF file not found: /x.gguf", DVC_ERROR],
            UserError,
            "validate: llm.model: GGUF file not found: /x.gguf",
        ),
        (
            ["step 3", "Killed", DVC_ERROR.replace("{c}", "-9")],
            pipeline.StageCrashed,
            "validate: killed by SIGKILL (exit -9); ERROR: failed to reproduce 'validate'",
        ),
        (  # the same kill seen through a shell that did not exec the command
            ["step 3", DVC_ERROR.replace("{c}", "137")],
            pipeline.StageCrashed,
            "validate: killed by SIGKILL (exit 137); ERROR: failed to reproduce",
        ),
        (
            ["step 3", DVC_ERROR.replace("{c}", "3")],
            pipeline.StageCrashed,
            "validate: exited with 3; ERROR: failed to reproduce",
        ),
        (  # a second `make run` in the same checkout
            ["ERROR: '/w/data/teacher/code' is busy, it is being blocked by:", "  (PID 7): dvc"],
            pipeline.StageCrashed,
            "validate: another run holds DVC's lock on this workspace, so the task is retried",
        ),
    ],
)
def test_a_failed_stage_says_whether_a_retry_can_help(tail, kind, message) -> None:
    tail = [line.format(s="validate", c=1) for line in tail]
    exc = pipeline._failure("validate", 255, tail)
    assert type(exc) is kind
    assert str(exc).startswith(message)


def _workspace(tmp_path: Path, *, gate: dict | None, package: dict | None) -> Path:
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"base": {"task": "code"}}), "utf-8")
    lock = {"stages": {"ingest": {"outs": [{"path": "data/raw/code", "md5": "ab12.dir"}]}}}
    (tmp_path / "dvc.lock").write_text(yaml.safe_dump(lock), "utf-8")
    model = tmp_path / "data/models/taco"
    model.mkdir(parents=True)
    run = {
        "weights_sha256": "f00",
        "first_steps": {"reward/mean": 0.25},
        "last_steps": {"reward/mean": 0.5},
    }
    (model / "taco_run.json").write_text(json.dumps(run), "utf-8")
    reports = tmp_path / "data/reports"
    reports.mkdir(parents=True)
    if gate is not None:
        (reports / "gate.json").write_text(json.dumps(gate), "utf-8")
    if package is not None:
        (reports / "package.json").write_text(json.dumps(package), "utf-8")
    return tmp_path


PACKAGE = {"model_tag": "taco-code:abc", "bento_tag": "taco_service:def", "forced": False}


def test_lineage_and_summary_of_a_passing_run(tmp_path: Path) -> None:
    gate = {"passed": True, "reasons": [], "recommended_rate": 0.33}
    ws = _workspace(tmp_path, gate=gate, package=PACKAGE)
    info = pipeline.lineage(ws)
    assert info == {
        "task": "code",
        "data_version": "ab12.dir",
        "model": "data/models/taco",
        "model_sha256": "f00",
        "reward": {"first": 0.25, "last": 0.5},
        "gate": {"passed": True, "reasons": []},
        "recommended_rate": 0.33,
        "model_tag": "taco-code:abc",
        "bento_tag": "taco_service:def",
    }
    text = pipeline.summary(ws)
    for part in ("ab12.dir", "0.2500", "0.5000", "PASSED", "0.33", "taco_service:def"):
        assert part in text
    assert "make serve" in text
    assert pipeline.gate_decision(ws) == {"passed": True, "reasons": []}


def test_a_failed_gate_shows_its_reasons_and_no_stale_bento(tmp_path: Path) -> None:
    reasons = ["trained beats truncate by 0.1% at rate 0.33; at least 1% is required."]
    gate = {"passed": False, "reasons": reasons, "recommended_rate": None}
    ws = _workspace(tmp_path, gate=gate, package=PACKAGE)  # package.json of an earlier run
    info = pipeline.lineage(ws)
    assert info["gate"] == {"passed": False, "reasons": reasons}
    assert info["model_tag"] is info["bento_tag"] is None
    text = pipeline.summary(ws)
    assert "FAILED" in text and reasons[0] in text
    assert "taco_service:def" not in text and "make serve" not in text
    assert pipeline.gate_decision(ws)["passed"] is False


def test_gate_decision_without_gate_json_is_a_user_error(tmp_path: Path) -> None:
    ws = _workspace(tmp_path, gate=None, package=None)
    with pytest.raises(UserError, match=r"gate\.json not found"):
        pipeline.gate_decision(ws)
    assert "(not run)" in pipeline.summary(ws)
