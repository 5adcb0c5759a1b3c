"""taco_retrain and taco_reproduce end to end with ``dag.test()`` on a tiny configuration (a
tiny LLM and encoder, real GitHub code rows) in a git + DVC workspace: the pass path (a bento
exists), a rerun (every stage skipped), the gate-fail path (the production model as the
champion to beat: packaging skipped, the run succeeds), the bad-data path (fails at validate,
nothing trained, the earlier data version restorable byte for byte), and the reproduction of
the packaged model from its bento tag.

The tests share one workspace and run in file order, as runs of one deployment would.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from taco import pipeline
from taco.config import load_params
from taco.layout import Layout
from tests.helpers.paths import shared_data
from tests.helpers.workspace import files, git, make_workspace, run, tiny_models, tiny_params

pytestmark = pytest.mark.slow

#: Gate thresholds a 3-step tiny model meets (the pass path) ...
LENIENT_GATE = {
    "min_gain_vs_start": -1.0,
    "min_gain_vs_best": -1.0,
    "max_rate_deviation": 1.0,
    "max_latency_ms_per_1k_tokens": 1.0e9,
}
#: ... and one it cannot: 50% better than the production model, which is the same model.
VS_PRODUCTION = {"params": {"gate": {"champion": "production", "min_gain_vs_champion": 0.5}}}


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    base = tmp_path_factory.mktemp("dagruns")
    sections = tiny_params(base, tiny_models(base / "models"))
    sections["airflow"].update({"retries": 1, "retry_delay_s": 1})
    sections["evaluate"] = {"max_rows": 16, "bootstrap_samples": 200}
    sections["gate"] = LENIENT_GATE
    workspace = make_workspace(base / "ws", sections)
    saved = {k: os.environ.get(k) for k in ("TACO_WORKSPACE", "AIRFLOW__CORE__DAGS_FOLDER")}
    os.environ["TACO_WORKSPACE"] = str(workspace)
    os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(workspace / "dags")
    run([str(Path(sys.executable).with_name("airflow")), "db", "migrate"], base)
    yield workspace
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def dag_test(ws: Path, dag_id: str, conf: dict[str, Any]) -> tuple[str, dict[str, str], dict]:
    """Run ``dag_id`` with ``dag.test()``: (run state, task states, XCom of each task)."""
    from airflow.models import DagBag

    bag = DagBag(dag_folder=str(ws / "dags"))
    assert bag.import_errors == {}
    dr = bag.dags[dag_id].test(run_conf=conf)
    tis = {ti.task_id: ti for ti in dr.get_task_instances()}
    xcoms = {k: ti.xcom_pull(task_ids=k) for k, ti in tis.items() if ti.state == "success"}
    return str(dr.state), {k: str(ti.state) for k, ti in tis.items()}, xcoms


#: What the first (passing) run left, for the later tests.
FIRST: dict[str, Any] = {}


def test_pass_path_packages_a_bento_and_returns_the_lineage(ws: Path) -> None:
    import bentoml

    state, tasks, xcoms = dag_test(ws, "taco_retrain", {"steps": 3})
    assert state == "success", tasks
    lineage = xcoms["lineage"]
    assert set(tasks.values()) == {"success"}, tasks
    assert lineage["gate"] == {"passed": True, "reasons": []}
    assert lineage["data_version"].endswith(".dir") and lineage["model_sha256"]
    assert bentoml.get(lineage["bento_tag"]).info.labels["model"] == lineage["model_tag"]
    assert (
        bentoml.models.get(lineage["model_tag"]).info.metadata["data_version"]
        == (lineage["data_version"])
    )
    assert lineage == pipeline.lineage(ws)
    assert xcoms["train"]["ran"] and xcoms["train"]["summary"]["steps"] == 3
    FIRST.update(raw=files(Layout.of(load_params(ws / "params.yaml"), ws).raw_dir), **lineage)
    git("add", "-A", cwd=ws)
    git("commit", "-qm", "data v1, model v1", cwd=ws)


def test_a_rerun_skips_every_stage(ws: Path) -> None:
    state, tasks, xcoms = dag_test(ws, "taco_retrain", {})
    assert state == "success", tasks
    for stage in ("ingest", "prepare", "validate", "teacher", "warmstart", "train", "evaluate"):
        assert xcoms[stage]["ran"] is False, (stage, xcoms[stage])
    assert xcoms["lineage"] == {k: v for k, v in FIRST.items() if k != "raw"}
    assert git("status", "--porcelain", "dvc.lock", cwd=ws) == ""  # lineage record unchanged


def test_gate_fail_path_skips_packaging_and_the_run_succeeds(ws: Path) -> None:
    from taco.serving import registry

    registry.promote(FIRST["model_tag"])  # the first model goes to production
    models_before = {r.tag for r in registry.list_models()}
    state, tasks, xcoms = dag_test(ws, "taco_retrain", VS_PRODUCTION)
    assert state == "success", tasks
    assert tasks["gate"] == "success" and tasks["package"] == "skipped"
    assert tasks["lineage"] == "success"
    assert xcoms["evaluate"]["ran"]  # gate.champion is an evaluate param: production scored
    lineage = xcoms["lineage"]
    assert lineage["gate"]["passed"] is False
    assert any("champion" in reason for reason in lineage["gate"]["reasons"])
    assert lineage["bento_tag"] is None and lineage["model_tag"] is None
    gate = json.loads(Layout.of(load_params(ws / "params.yaml"), ws).gate_report.read_text())
    assert gate["champion"] == str(registry.get_model(FIRST["model_tag"]).path)
    assert "FAILED" in pipeline.summary(ws)
    assert {r.tag for r in registry.list_models()} == models_before  # nothing packaged


def test_bad_data_fails_at_validate_trains_nothing_and_keeps_the_earlier_version(
    ws: Path, tmp_path: Path
) -> None:
    params = load_params(ws / "params.yaml")
    lay = Layout.of(params, ws)
    v1, v1_hash = FIRST["raw"], FIRST["data_version"]
    assert files(lay.raw_dir) == v1
    model_before = files(lay.trained_model)
    bad = tmp_path / "code.jsonl"  # a drop whose docstrings went missing: 70% empty
    rows = [json.loads(line) for line in shared_data("code").open(encoding="utf-8")]
    for i, row in enumerate(rows):
        if i % 10 < 7:
            row["reference"] = ""
    bad.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")

    state, tasks, _ = dag_test(ws, "taco_retrain", {"source": str(bad)})
    assert state == "failed"
    assert tasks["ingest"] == tasks["prepare"] == "success"
    assert tasks["validate"] == "failed"
    for later in ("teacher", "warmstart", "train", "evaluate", "gate", "package", "lineage"):
        assert tasks[later] == "upstream_failed", tasks
    report = json.loads(lay.validation_report.read_text())
    assert report["success"] is False
    assert files(lay.trained_model) == model_before  # nothing trained
    assert pipeline.lineage(ws)["data_version"] != v1_hash  # the workspace holds the bad one

    restored = tmp_path / "restored"
    out = run([sys.executable, "-m", "taco", "data", "restore", "--rev", v1_hash, "--out",
               str(restored)], ws)  # fmt: skip
    assert "restored" in out.stdout
    assert files(restored) == v1  # byte for byte, from the DVC remote
    by_rev = tmp_path / "by-rev"
    run(
        [sys.executable, "-m", "taco", "data", "restore", "--rev", "HEAD", "--out", str(by_rev)], ws
    )
    assert files(by_rev) == v1  # and by the git commit of the good run


def test_reproduce_restores_the_packaged_models_data_and_matches(ws: Path) -> None:
    import bentoml

    from taco.serving import registry

    model = registry.get_model(FIRST["model_tag"])
    bento = registry.bento_for(model.tag)
    assert bento is not None
    lock = (ws / "dvc.lock").read_text()
    state, tasks, xcoms = dag_test(ws, "taco_reproduce", {"tag": bento})
    assert state == "success", tasks
    result = xcoms["compare"]
    assert result["match"] and result["compared"] > 0 and result["mismatches"] == []
    assert result["model_tag"] == model.tag == FIRST["model_tag"]
    assert result["data_version"] == model.metadata["data_version"] == FIRST["data_version"]
    scratch = Path(xcoms["restore"]["scratch"])
    assert files(scratch / "data" / "raw" / "code") == FIRST["raw"]  # byte for byte
    params = load_params(ws / "params.yaml")
    report = Layout.of(params, ws).reproduce_report(xcoms["restore"]["name"])
    assert json.loads(report.read_text())["match"] is True
    assert (ws / "dvc.lock").read_text() == lock  # the workspace's lineage record untouched
    assert bentoml.models.get(model.tag).info.labels["stage"] == "production"
