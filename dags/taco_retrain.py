"""# taco_retrain: scheduled retraining of a task-aware prompt compressor

`ingest → prepare → validate → teacher → warmstart → train → evaluate → gate → package`,
then `lineage`. Each stage task runs **`dvc repro --single-item <stage>`** in the workspace
(`$TACO_WORKSPACE`, default: the project this file lives in): DVC reruns a stage only when
its code, params or data changed and records what ran in `dvc.lock`, so a task is idempotent,
a retry or a repeated run costs seconds, and `dvc.lock` is the lineage record.

- **When**: `airflow.schedule` of params.yaml (default weekly, no catch-up), and/or an
  Airflow Asset for the raw source (`airflow.asset`): an event on it triggers a run.
- **Per run** (trigger with config): `task`, `format`, `source`, `rates`, `steps`, and
  `params` (any params.yaml sections) are written into the workspace's params.yaml first,
  as `dvc exp run --set-param` does; dvc.lock records them. Any other key (a typo such as
  `step`) fails the run at its first task, naming the closest allowed key.
- **validate** fails the run with the Great Expectations summary (nothing downstream runs);
  the validated data is then pushed to the DVC remote (the data version).
- **train** runs as its own process (`torchrun` when `train.nproc_per_node` > 1) on the
  queue and pool named by `airflow.train_queue` / `airflow.train_pool` (e.g. `gpu`).
- **gate** is a short circuit: a "no" skips `package`, the run still succeeds and the log
  says why; **package** registers the model and builds the bento.
- **lineage** returns (XCom) and prints the data version, model and bento tags, the gate's
  decision and the recommended rate.

A stage that says no (exit 1/2: bad params, failed validation) fails at once; a crash is
retried (`airflow.retries`). `max_active_runs=1`: two runs never write one workspace.
"""

from __future__ import annotations

import datetime
import os
from pathlib import Path
from typing import Any

from airflow.sdk import (
    Asset,
    AssetOrTimeSchedule,
    CronTriggerTimetable,
    ExceptionRetryPolicy,
    Param,
    RetryAction,
    RetryRule,
    chain,
    dag,
    task,
)

from taco.config import load_params

WORKSPACE = Path(os.environ.get("TACO_WORKSPACE") or Path(__file__).resolve().parents[1])
SETTINGS = load_params(WORKSPACE / "params.yaml").airflow
#: A stage that says no (taco exit 1 or 2: bad params, failed validation) fails at once.
NO_RETRY_WHEN_A_STAGE_SAYS_NO = ExceptionRetryPolicy(
    rules=[RetryRule(exception="taco.errors.TacoError", action=RetryAction.FAIL)]
)


def _schedule() -> Any:
    if SETTINGS.asset and SETTINGS.schedule:
        timetable = CronTriggerTimetable(SETTINGS.schedule, timezone="UTC")
        return AssetOrTimeSchedule(timetable=timetable, assets=Asset(SETTINGS.asset))
    return Asset(SETTINGS.asset) if SETTINGS.asset else SETTINGS.schedule


def _stage_task(name: str, *, push: bool = False, **task_args: Any) -> Any:
    @task(task_id=name, **task_args)
    def run_stage(params: dict[str, Any] | None = None) -> dict[str, Any]:
        from taco import pipeline

        return pipeline.run_stage(name, WORKSPACE, params, push=push)

    return run_stage()


@dag(
    dag_id="taco_retrain",
    schedule=_schedule(),
    start_date=datetime.datetime.fromisoformat(SETTINGS.start_date).replace(tzinfo=datetime.UTC),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["taco"],
    default_args={
        "retries": SETTINGS.retries,
        "retry_delay": datetime.timedelta(seconds=SETTINGS.retry_delay_s),
        "retry_policy": NO_RETRY_WHEN_A_STAGE_SAYS_NO,
    },
    params={
        "task": Param(None, type=["null", "string"], description="base.task"),
        "format": Param(None, type=["null", "string"], description="ingest.format"),
        "source": Param(None, type=["null", "string"], description="ingest.path"),
        "rates": Param(
            None, type=["null", "array"], items={"type": "number"}, description="evaluate.rates"
        ),
        "steps": Param(None, type=["null", "integer"], minimum=1, description="train.steps"),
        "params": Param({}, type="object", description="params.yaml sections merged over it"),
    },
)
def taco_retrain() -> None:
    @task.short_circuit(task_id="gate", ignore_downstream_trigger_rules=False)
    def gate(params: dict[str, Any] | None = None) -> bool:
        from taco import pipeline

        pipeline.run_stage("gate", WORKSPACE, params)
        return pipeline.gate_decision(WORKSPACE)["passed"]

    @task(task_id="lineage", trigger_rule="none_failed")
    def lineage() -> dict[str, Any]:
        from taco import pipeline

        print(pipeline.summary(WORKSPACE), flush=True)
        return pipeline.lineage(WORKSPACE)

    chain(
        _stage_task("ingest"),
        _stage_task("prepare"),
        _stage_task("validate", push=True),
        _stage_task("teacher"),
        _stage_task("warmstart"),
        _stage_task("train", queue=SETTINGS.train_queue, pool=SETTINGS.train_pool),
        _stage_task("evaluate"),
        gate(),
        _stage_task("package"),
        lineage(),
    )


taco_retrain()
