"""The Airflow DAGs parse cleanly, import nothing heavy, and are wired as DESIGN.md says.

(The stage vocabulary check, DAG task ids = the CLI's STAGES = dvc.yaml, lives in
tests/test_pipeline_contract.py; the DAGs are run end to end in tests/integration/.)
"""

from __future__ import annotations

import json
import os
import re
import runpy
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers.paths import ROOT

DAGS = ROOT / "dags"
HEAVY = ("torch", "transformers", "dvc", "great_expectations", "bentoml")

PARSE = """
import json, sys
from airflow.models import DagBag
bag = DagBag(dag_folder=sys.argv[1])
print(json.dumps({
    "errors": {k: str(v) for k, v in bag.import_errors.items()},
    "dags": sorted(bag.dag_ids),
    "heavy": sorted({m.split(".")[0] for m in sys.modules} & set(sys.argv[2:])),
    "seconds": {s.file: s.duration.total_seconds() for s in bag.dagbag_stats},
}))
"""


def _parse_in_fresh_interpreter() -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-c", PARSE, str(DAGS), *HEAVY],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_dagbag_parses_without_errors_and_imports_nothing_heavy() -> None:
    from airflow.configuration import conf

    report = _parse_in_fresh_interpreter()
    assert report["errors"] == {}
    assert {"taco_retrain", "taco_reproduce"} <= set(report["dags"])
    assert report["heavy"] == [], f"imported at parse time: {report['heavy']}"
    # Airflow gives up on a DAG file after core.dagbag_import_timeout; the figure is printed
    # for the record (bench/dag_parse.py compares it with an empty DAG file).
    limit = conf.getfloat("core", "dagbag_import_timeout")
    for file, seconds in report["seconds"].items():
        print(f"parse time of {file}: {seconds:.3f} s (Airflow's limit {limit:.0f} s)")
        assert seconds < limit


def _bag(monkeypatch: pytest.MonkeyPatch, workspace: Path | None = None) -> Any:
    from airflow.models import DagBag

    if workspace is not None:
        monkeypatch.setenv("TACO_WORKSPACE", str(workspace))
    bag = DagBag(dag_folder=str(DAGS))
    assert bag.import_errors == {}
    return bag


def _workspace_params(tmp_path: Path, airflow: dict[str, Any]) -> Path:
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"airflow": airflow}), encoding="utf-8")
    return tmp_path


def test_retrain_dag_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    dag = _bag(monkeypatch).dags["taco_retrain"]
    assert dag.max_active_runs == 1 and dag.catchup is False
    assert dag.doc_md and "dvc repro --single-item" in dag.doc_md
    assert dag.timetable.expression == "0 0 * * 0"  # params.yaml: "@weekly"
    assert set(dag.params) == {"task", "format", "source", "rates", "steps", "params"}
    assert dag.get_task("gate").task_type.startswith("_ShortCircuit")
    assert dag.get_task("lineage").trigger_rule == "none_failed"
    assert all(t.retries == 2 for t in dag.tasks)  # params.yaml airflow.retries


def test_train_task_goes_to_the_queue_and_pool_named_in_params(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    ws = _workspace_params(tmp_path, {"train_queue": "gpu", "train_pool": "gpu", "retries": 0})
    dag = _bag(monkeypatch, ws).dags["taco_retrain"]
    train = dag.get_task("train")
    assert (train.queue, train.pool) == ("gpu", "gpu")
    others = [t for t in dag.tasks if t.task_id != "train"]
    assert all(t.queue != "gpu" and t.pool != "gpu" for t in others)
    assert all(t.retries == 0 for t in dag.tasks)


def test_an_asset_for_the_raw_source_triggers_the_dag(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    uri = "file:///data/incoming/code.jsonl"
    ws = _workspace_params(tmp_path, {"schedule": None, "asset": uri})
    dag = _bag(monkeypatch, ws).dags["taco_retrain"]
    assert dag.timetable.asset_condition.uri == uri
    assert not hasattr(dag.timetable, "timetable")  # the asset alone
    both = _workspace_params(tmp_path, {"schedule": "@daily", "asset": uri})
    dag = _bag(monkeypatch, both).dags["taco_retrain"]
    assert dag.timetable.asset_condition.uri == uri  # the asset, or else the time
    assert dag.timetable.timetable.expression == "0 0 * * *"


def test_bad_airflow_params_are_a_dag_import_error_naming_the_key(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from airflow.models import DagBag

    ws = _workspace_params(tmp_path, {"start_date": "next tuesday"})
    monkeypatch.setenv("TACO_WORKSPACE", str(ws))
    errors = DagBag(dag_folder=str(DAGS)).import_errors
    assert errors and all("airflow.start_date" in str(e) for e in errors.values())


def test_an_unknown_run_conf_key_fails_make_run_at_its_first_task_naming_it(
    tmp_path: Path,
) -> None:
    """``make run CONF='{"step": 3}'`` (``airflow dags test --conf``): Airflow keeps a conf key
    that is not a DAG param as a new param, so taco refuses it before any stage runs or
    params.yaml changes, and the run's last error lines (what `make run` shows) name it."""
    from taco import pipeline

    ws = _workspace_params(tmp_path, {"retries": 0})
    before = (ws / "params.yaml").read_bytes()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "TACO_WORKSPACE": str(ws),
        "AIRFLOW_HOME": str(tmp_path / "airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
    }
    airflow = str(Path(sys.executable).with_name("airflow"))
    migrate = [airflow, "db", "migrate"]
    subprocess.run(migrate, env=env, check=True, capture_output=True, timeout=300)
    conf = json.dumps({"step": 3, "source": "data/raw.jsonl"})
    out = subprocess.run(
        [airflow, "dags", "test", "taco_retrain", "--conf", conf],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    log = out.stdout + out.stderr
    assert out.returncode != 0, log[-3000:]
    shown = [ln for ln in log.splitlines() if re.search(r"Error|Exception|error:", ln)][-4:]
    expected = (
        "taco.config.ConfigError: run settings: unknown key(s) 'step' (did you mean 'steps'?); "
        f"allowed: {', '.join(pipeline.RUN_CONF_KEYS)}"
    )
    assert any(ln.strip().startswith(expected) for ln in shown), shown
    assert re.findall(r"\[DAG TEST\] starting task_id=(\w+)", log) == ["ingest"]  # only it ran
    assert (ws / "params.yaml").read_bytes() == before  # "source" was not written either


def test_the_run_conf_keys_taco_allows_are_the_retrain_dags_params(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from taco import pipeline

    dag = _bag(monkeypatch).dags["taco_retrain"]
    assert set(dag.params) == set(pipeline.RUN_CONF_KEYS)


def test_the_reproduce_dag_checks_its_conf_against_its_own_params(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from taco import pipeline
    from taco.config import ConfigError

    keys = runpy.run_path(str(DAGS / "taco_reproduce.py"))["REPRODUCE_CONF_KEYS"]
    assert set(_bag(monkeypatch).dags["taco_reproduce"].params) == set(keys)
    pipeline.check_run_conf({"tag": "m:1", "tolerance": 0.1}, keys)
    with pytest.raises(ConfigError) as info:
        pipeline.check_run_conf({"tag": "m:1", "tolerence": 0.1}, keys)
    assert str(info.value) == (
        "run settings: unknown key(s) 'tolerence' (did you mean 'tolerance'?); "
        "allowed: tag, tolerance"
    )
