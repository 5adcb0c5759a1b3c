"""The BentoML model store as taco's model registry: register a trained compressor, list
taco models, promote one to production, and find what to serve or compare against.

A taco model is a BentoML model named ``<package.name>-<task>`` with the labels ``task`` and
``stage`` (``candidate`` when packaged, ``production`` after ``taco promote``, ``archived``
when a later model of its task is promoted). The store is ``$BENTOML_HOME`` (``make``
targets use the project-local ``.bentoml/``). ``bentoml`` is imported inside functions, so
importing this module stays cheap.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from taco.config import Params
from taco.errors import UserError
from taco.layout import BUDGET_TOKENIZER

log = logging.getLogger(__name__)

TASK_LABEL = "task"
STAGE_LABEL = "stage"
MODEL_LABEL = "model"  # on a bento: the tag of the model it serves
CANDIDATE, PRODUCTION, ARCHIVED = "candidate", "production", "archived"
MODEL_INFO_FILE = "model.yaml"  # where BentoML keeps a stored model's labels and metadata


@dataclasses.dataclass(frozen=True)
class ModelRecord:
    """One taco model of the store: its tag, labels, creation time, folder and metadata."""

    tag: str
    task: str
    stage: str
    created: datetime.datetime
    path: Path
    metadata: Mapping[str, Any]

    @property
    def recommended_rate(self) -> float | None:
        rate = self.metadata.get("recommended_rate")
        return float(rate) if rate is not None else None

    def key_metrics(self) -> dict[str, float]:
        """The trained compressor's scores at the recommended rate (else at every rate):
        ``rate_<r>/<metric>`` → value, from the evaluation metrics packaged with it."""
        prefix = f"{self.task}/"
        rate = self.recommended_rate
        out = {}
        for key, value in (self.metadata.get("metrics") or {}).items():
            parts = key.removeprefix(prefix).split("/")
            if len(parts) != 3 or parts[1] != "trained" or not key.startswith(prefix):
                continue
            if rate is not None and parts[0] != f"rate_{rate:g}":
                continue
            out[f"{parts[0]}/{parts[2]}"] = value
        return out


def store_home() -> str:
    """The BentoML home the store lives in (for messages)."""
    return os.environ.get("BENTOML_HOME", str(Path("~/bentoml").expanduser()))


def model_name(params: Params) -> str:
    """``<package.name>-<base.task>``: the BentoML model (and bento) name of this task."""
    return f"{params.package.name}-{params.base.task}"


def _record(model: Any) -> ModelRecord | None:
    labels = model.info.labels
    if TASK_LABEL not in labels or STAGE_LABEL not in labels:
        return None
    return ModelRecord(
        str(model.tag),
        labels[TASK_LABEL],
        labels[STAGE_LABEL],
        model.info.creation_time,
        Path(model.path),
        dict(model.info.metadata),
    )


def register(
    folder: Path,
    name: str,
    task: str,
    metadata: Mapping[str, Any],
    stage: str = CANDIDATE,
    budget_tokenizer: Any = None,
) -> ModelRecord:
    """Copy a compressor ``folder`` (weights, tokenizer, ``taco_run.json``) into a new
    BentoML model ``name`` labelled with ``task`` and ``stage``; ``metadata`` must hold
    BentoML metadata types (no None). ``budget_tokenizer`` (the target LLM's Hugging Face
    tokenizer) is saved in the model's ``budget_tokenizer/``: the service counts budgets in
    it, the units of the evaluation's rates and of ``recommended_rate``."""
    import bentoml

    labels = {TASK_LABEL: task, STAGE_LABEL: stage}
    with bentoml.models.create(name, labels=labels, metadata=dict(metadata)) as model:
        shutil.copytree(folder, model.path, dirs_exist_ok=True)
        if budget_tokenizer is not None:
            budget_tokenizer.save_pretrained(str(Path(model.path) / BUDGET_TOKENIZER))
    record = _record(bentoml.models.get(model.tag))
    assert record is not None
    log.info("registered %s (%s, %s) in %s", record.tag, task, stage, store_home())
    return record


def list_models(task: str | None = None) -> list[ModelRecord]:
    """Taco models in the store (of ``task`` when given), newest first."""
    import bentoml

    records = [r for m in bentoml.models.list() if (r := _record(m)) is not None]
    records = [r for r in records if task is None or r.task == task]
    return sorted(records, key=lambda r: r.created, reverse=True)


def get_model(tag: str) -> ModelRecord:
    """The taco model ``tag`` (``name:version`` or ``name:latest``); UserError when the store
    has no such model or it is not a taco model."""
    import bentoml
    from bentoml.exceptions import BentoMLException

    try:
        model = bentoml.models.get(tag)
    except (BentoMLException, ValueError) as exc:
        raise UserError(
            f"model {tag!r} is not in the BentoML store at {store_home()} ({exc})"
        ) from None
    record = _record(model)
    if record is None:
        raise UserError(f"model {tag!r} has no task/stage labels: not a taco model")
    return record


def _set_stage(tag: str, stage: str) -> None:
    """Relabel a stored model (its model.yaml rewritten through a temp file and a rename)."""
    import bentoml

    model = bentoml.models.get(tag)
    model.info.labels[STAGE_LABEL] = stage
    path = Path(model.path) / MODEL_INFO_FILE
    tmp = path.with_name(f".{MODEL_INFO_FILE}.tmp-{os.getpid()}")
    with tmp.open("w", encoding="utf-8") as fh:
        model.info.dump(fh)
    os.replace(tmp, path)


def promote(tag: str) -> tuple[ModelRecord, list[str]]:
    """Label ``tag`` ``stage=production``; every other production model of its task becomes
    ``archived``. Returns the promoted record and the archived tags."""
    record = get_model(tag)
    archived = [
        r.tag for r in list_models(record.task) if r.stage == PRODUCTION and r.tag != record.tag
    ]
    for old in archived:
        _set_stage(old, ARCHIVED)
        log.info("archived %s", old)
    _set_stage(record.tag, PRODUCTION)
    log.info("promoted %s to production (task %s)", record.tag, record.task)
    return get_model(record.tag), archived


def production(task: str) -> ModelRecord | None:
    """The production model of ``task``, or None."""
    return next((r for r in list_models(task) if r.stage == PRODUCTION), None)


def production_model_path(task: str) -> Path | None:
    """Folder of the production model of ``task`` (a ``Compressor.from_pretrained``
    folder), or None: what the gate's ``champion: production`` resolves to."""
    record = production(task)
    return record.path if record is not None else None


def serving_choice(params: Params) -> tuple[ModelRecord, str]:
    """What ``taco serve`` serves and why: ``serve.model`` when set, else the production
    model of ``base.task``, else its latest candidate. UserError when nothing is packaged."""
    if params.serve.model:
        return get_model(params.serve.model), "serve.model in params.yaml"
    task = params.base.task
    prod = production(task)
    if prod is not None:
        return prod, f"the production model of task {task!r}"
    candidates = [r for r in list_models(task) if r.stage == CANDIDATE]
    if candidates:
        return candidates[0], (
            f"no production model of task {task!r}: the latest packaged candidate "
            f"(promote it with `taco promote {candidates[0].tag}`)"
        )
    raise UserError(
        f"no packaged model of task {task!r} in the BentoML store at {store_home()}: "
        "run `make run` first; if it ran, its gate refused the model (data/reports/gate.json "
        "says why; `taco package --force` packages it anyway); outside make, set "
        "BENTOML_HOME=$PWD/.bentoml"
    )


def bento_for(model_tag: str) -> str | None:
    """Tag of the newest bento built for ``model_tag`` (its ``model`` label), or None."""
    import bentoml

    bentos = [b for b in bentoml.bentos.list() if b.info.labels.get(MODEL_LABEL) == model_tag]
    if not bentos:
        return None
    return str(max(bentos, key=lambda b: b.info.creation_time).tag)


def table_metrics(record: ModelRecord) -> str:
    """``taco models``' KEY METRICS cell: ``key_metrics``, narrowed to the gated score and the
    achieved rate when the model says which score its gate read (``gate_metric``)."""
    metrics = record.key_metrics()
    gated = record.metadata.get("gate_metric")
    if gated:
        metrics = {
            k: v for k, v in metrics.items() if k.rsplit("/", 1)[-1] in (gated, "achieved_rate")
        }
    return " ".join(f"{k}={v:.3f}" for k, v in sorted(metrics.items())) or "-"


def format_table(records: list[ModelRecord]) -> str:
    """``taco models``'s table: tag, stage, task, date, recommended rate, gate, key metrics."""
    if not records:
        return (
            f"no taco models in the BentoML store at {store_home()} (run `make run`; outside "
            "make, set BENTOML_HOME=$PWD/.bentoml)\n"
        )
    rows = [("TAG", "STAGE", "TASK", "CREATED", "RATE", "GATE", "KEY METRICS")]
    for r in records:
        rate = r.recommended_rate
        gate = r.metadata.get("gate_passed")
        rows.append(
            (
                r.tag,
                r.stage,
                r.task,
                r.created.strftime("%Y-%m-%d %H:%M"),
                "-" if rate is None else f"{rate:g}",
                "forced" if r.metadata.get("forced") else {True: "passed"}.get(gate, "-"),
                table_metrics(r),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    return "".join(
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)) + "  " + row[-1] + "\n"
        for row in rows
    )
