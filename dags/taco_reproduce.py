"""# taco_reproduce: bring back a packaged model's data and check that its scores hold

Trigger with `{"tag": "<model or bento tag>"}` (and optionally `tolerance`):
`restore → prepare → validate → teacher → evaluate → compare`.

- **restore** looks the model up in the BentoML store and reads its metadata (data version,
  resolved params, recorded evaluation scores), restores that raw snapshot from the DVC
  remote, byte for byte, into a scratch project `<data_dir>/reproduce/<model>/`, and puts
  the model's own files there.
- **prepare, validate, teacher, evaluate** run `taco <stage> --params <scratch>/params.yaml`
  (the taco CLI, not `dvc repro`: the workspace's `dvc.lock` is taco_retrain's lineage record
  and must not change). The LLM cache makes the teacher pass cheap when it has seen the data.
- **compare** checks every recorded score of the trained model against the reproduced one
  (absolute difference ≤ `tolerance`, default `airflow.reproduce_tolerance`), writes
  `<data_dir>/reports/reproduce/<model>.json`, and fails the run naming every score that
  moved.
"""

from __future__ import annotations

import datetime
import os
from pathlib import Path
from typing import Any

from airflow.sdk import ExceptionRetryPolicy, Param, RetryAction, RetryRule, chain, dag, task

from taco.config import load_params

WORKSPACE = Path(os.environ.get("TACO_WORKSPACE") or Path(__file__).resolve().parents[1])
SETTINGS = load_params(WORKSPACE / "params.yaml").airflow
STAGES = ("prepare", "validate", "teacher", "evaluate")
REPRODUCE_CONF_KEYS = ("tag", "tolerance")  # its params: any other conf key is a typo


def _stage_task(name: str) -> Any:
    @task(task_id=name)
    def run_stage(ti: Any = None) -> dict[str, Any]:
        from taco import pipeline

        scratch = ti.xcom_pull(task_ids="restore")
        return pipeline.run_cli(name, WORKSPACE, Path(scratch["params_file"]))

    return run_stage()


@dag(
    dag_id="taco_reproduce",
    schedule=None,
    start_date=datetime.datetime.fromisoformat(SETTINGS.start_date).replace(tzinfo=datetime.UTC),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["taco"],
    default_args={
        "retries": SETTINGS.retries,
        "retry_delay": datetime.timedelta(seconds=SETTINGS.retry_delay_s),
        "retry_policy": ExceptionRetryPolicy(
            rules=[RetryRule(exception="taco.errors.TacoError", action=RetryAction.FAIL)]
        ),
    },
    params={
        "tag": Param(type="string", minLength=1, description="BentoML model or bento tag"),
        "tolerance": Param(
            SETTINGS.reproduce_tolerance,
            type="number",
            minimum=0,
            description="largest |recorded - reproduced| score that still matches",
        ),
    },
)
def taco_reproduce() -> None:
    @task(task_id="restore")
    def restore(params: dict[str, Any] | None = None) -> dict[str, Any]:
        from taco import pipeline, reproduce

        pipeline.check_run_conf(params or {}, REPRODUCE_CONF_KEYS)  # a typo fails here
        return reproduce.setup(str((params or {})["tag"]), WORKSPACE)

    @task(task_id="compare")
    def compare(ti: Any = None, params: dict[str, Any] | None = None) -> dict[str, Any]:
        from taco import reproduce

        scratch = ti.xcom_pull(task_ids="restore")
        return reproduce.check(scratch, WORKSPACE, float((params or {})["tolerance"]))

    chain(restore(), *(_stage_task(name) for name in STAGES), compare())


taco_reproduce()
