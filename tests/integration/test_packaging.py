"""`taco package`, `taco models`, `taco promote` and `taco serve` as real subprocesses on a
real BentoML store (a temporary BENTOML_HOME per test)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.helpers import packaging as fx
from tests.helpers.paths import ROOT, run_taco


@pytest.fixture(autouse=True)
def _own_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "bentoml"
    monkeypatch.setenv("BENTOML_HOME", str(home))
    return home


def _git_repo(root: Path) -> str:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()

    git("init", "-q")
    git("add", "-A")
    git("commit", "-qm", "fixture")
    return git("rev-parse", "HEAD")


def _stored(home: Path, tag: str) -> dict:
    name, version = tag.split(":")
    return yaml.safe_load((home / "models" / name / version / "model.yaml").read_text())


def _one_line_error(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("taco: error:")]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    return lines[0]


def test_package_registers_the_model_with_its_lineage(tmp_path: Path, _own_store: Path) -> None:
    fx.package_project(tmp_path)
    commit = _git_repo(tmp_path)
    proc = run_taco("package", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    report = json.loads((tmp_path / "data" / "reports" / "package.json").read_text())
    assert summary == report
    assert report["bento_tag"] is None  # package.build: false in this fixture
    assert report["gate_passed"] is True and report["forced"] is False
    assert report["recommended_rate"] == 0.5
    assert report["data_version"] == "0123456789abcdef0123456789abcdef.dir"

    stored = _stored(_own_store, report["model_tag"])
    assert report["model_tag"].startswith("taco-code:")
    assert stored["labels"] == {"task": "code", "stage": "candidate"}
    meta = stored["metadata"]
    assert meta["metrics"] == {k: v for k, v in fx.metrics().items() if v is not None}
    assert meta["gate_passed"] is True and meta["gate_reasons"] == []
    assert meta["gate_metric"] == "bleu"  # what `taco models` shows
    assert meta["recommended_rate"] == 0.5
    assert meta["data_version"] == report["data_version"]
    assert meta["git_commit"] == commit
    assert yaml.safe_load(meta["params"])["base"]["task"] == "code"
    assert meta["train"]["weights_sha256"] == "seed-0"
    name, version = report["model_tag"].split(":")
    files = {p.name for p in (_own_store / "models" / name / version).iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "taco_run.json"} <= files
    # the target LLM's tokenizer (embedded SmolLM2): the units of recommended_rate
    assert meta["budget_tokens"] == "llm" and "budget_tokenizer" in files
    budget = _own_store / "models" / name / version / "budget_tokenizer"
    assert (budget / "tokenizer.json").is_file()

    listed = json.loads(run_taco("models", "--json", cwd=tmp_path).stdout)
    assert [m["tag"] for m in listed] == [report["model_tag"]]
    assert listed[0]["stage"] == "candidate" and listed[0]["task"] == "code"
    assert listed[0]["key_metrics"] == {"rate_0.5/bleu": 0.35, "rate_0.5/achieved_rate": 0.49}


def test_an_llm_tokenizer_that_does_not_load_falls_back_to_encoder_tokens(
    tmp_path: Path, _own_store: Path
) -> None:
    llm = {
        "backend": "openai",
        "model": "served-model",
        "openai": {"tokenizer": str(tmp_path / "no-such-tokenizer")},
    }
    fx.package_project(tmp_path, llm=llm)
    proc = run_taco("package", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "no-such-tokenizer" in proc.stderr and "encoder's tokens" in proc.stderr
    tag = json.loads(proc.stdout.strip().splitlines()[-1])["model_tag"]
    assert _stored(_own_store, tag)["metadata"]["budget_tokens"] == "encoder"
    name, version = tag.split(":")
    assert not (_own_store / "models" / name / version / "budget_tokenizer").exists()


def test_a_failed_gate_refuses_and_force_overrides(tmp_path: Path) -> None:
    fx.package_project(tmp_path, passed=False)
    line = _one_line_error(run_taco("package", cwd=tmp_path))
    assert "the gate did not pass (trained does not beat truncate at rate 0.5" in line
    assert "--force" in line
    assert not (tmp_path / "data" / "reports" / "package.json").exists()
    assert json.loads(run_taco("models", "--json", cwd=tmp_path).stdout) == []

    forced = run_taco("package", "--force", cwd=tmp_path)
    assert forced.returncode == 0, forced.stderr
    assert "packaging a model the gate refused" in forced.stderr  # logged
    report = json.loads((tmp_path / "data" / "reports" / "package.json").read_text())
    assert report["forced"] is True and report["gate_passed"] is False
    table = run_taco("models", cwd=tmp_path).stdout
    assert report["model_tag"] in table and "forced" in table


@pytest.mark.parametrize(
    ("spoil", "message"),
    [
        (lambda r: (r / "data/reports/gate.json").unlink(), "gate.json not found"),
        (
            lambda r: fx.write_reports(r, gate_json=fx.gate(task="qa")),
            "is the gate of task 'qa', not of base.task 'code'",
        ),
        (
            lambda r: fx.write_reports(r, gate_json=fx.gate(model="data/models/other")),
            "judged data/models/other",
        ),
        (
            lambda r: fx.write_reports(r, metrics_json=fx.metrics(task="qa")),
            "has no metrics of task 'code' (it has qa)",
        ),
        (lambda r: (r / "data/reports/gate.json").write_text("{"), "gate.json: not valid JSON"),
        (
            lambda r: (r / "data/models/taco/config.json").unlink(),
            "no trained model there",
        ),
    ],
    ids=["no-gate", "other-task-gate", "other-model", "other-task-metrics", "bad-json", "no-model"],
)
def test_bad_inputs_give_one_line(tmp_path: Path, spoil, message) -> None:
    fx.package_project(tmp_path)
    spoil(tmp_path)
    assert message in _one_line_error(run_taco("package", cwd=tmp_path))


def test_promote_makes_production_and_archives_the_previous(tmp_path: Path) -> None:
    fx.package_project(tmp_path, seed=0)
    first = json.loads(run_taco("package", cwd=tmp_path).stdout.splitlines()[-1])["model_tag"]
    fx.write_trained_model(tmp_path, seed=1)
    second = json.loads(run_taco("package", cwd=tmp_path).stdout.splitlines()[-1])["model_tag"]

    out = run_taco("promote", first, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert f"{first} is now the production model of task code" in out.stdout
    out = run_taco("promote", second, cwd=tmp_path)
    assert f"(archived: {first})" in out.stdout
    stages = {m["tag"]: m["stage"] for m in json.loads(run_taco("models", "--json").stdout)}
    assert stages == {first: "archived", second: "production"}

    # The gate's `champion: production` resolves to the production model's folder.
    code = (
        "from taco.serving.registry import production_model_path as p;"
        "print(p('code')); print(p('qa'))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    path, none = proc.stdout.split()
    assert Path(path).name == second.split(":")[1] and (Path(path) / "config.json").is_file()
    assert none == "None"

    assert "not in the BentoML store" in _one_line_error(
        run_taco("promote", "taco-code:nosuchversion", cwd=tmp_path)
    )


def test_serve_with_nothing_packaged_says_run_make_run(tmp_path: Path) -> None:
    fx.package_project(tmp_path)
    line = _one_line_error(run_taco("serve", cwd=tmp_path))
    assert line.startswith("taco: error: no packaged model of task 'code'")
    assert "run `make run` first; if it ran, its gate refused the model" in line
    assert "`taco package --force`" in line and line.endswith("BENTOML_HOME=$PWD/.bentoml")
