"""`taco package`: the gated, trained compressor into the BentoML store with its lineage, a
bento built from bentofile.yaml, and both tags in ``data/reports/package.json``.

Refuses (UserError) unless ``data/reports/gate.json`` says the gate passed; ``force`` (the
CLI's ``--force``, for a human) packages anyway and says so in the log, the model's metadata
and package.json. The model's metadata carries the evaluation metrics of its task, the gate
decision and reasons, the recommended rate (the service's default), the data version (the
ingest output's md5 in dvc.lock), the git commit and the resolved params.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

import taco
from taco.config import Params, to_dict
from taco.data.files import write_atomic
from taco.errors import StageFailed, UserError
from taco.layout import BENTOFILE, METRICS_FILE, PARAMS_FILE, RUN_RECORD, Layout
from taco.serving import registry
from taco.versioning import data_version

log = logging.getLogger(__name__)

#: taco_run.json keys copied into the model's metadata (what training did, in short).
RUN_KEYS = ("start_model", "git_commit", "data_versions", "steps", "kept_step", "weights_sha256")


def read_json(path: Path, stage: str) -> Any:
    """The JSON that ``stage`` wrote at ``path``; UserError when missing or malformed."""
    if not path.is_file():
        raise UserError(f"{path} not found: run `taco {stage}` (dvc repro {stage}) first")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise UserError(f"{path}: not valid JSON ({exc})") from None


def read_gate(path: Path, task: str, model: Path, root: Path) -> dict[str, Any]:
    """gate.json, checked: a mapping with a boolean ``passed``, of ``task``, judging
    ``model``; UserError naming the file and the problem otherwise."""
    gate = read_json(path, "gate")
    if not isinstance(gate, dict) or not isinstance(gate.get("passed"), bool):
        raise UserError(f"{path}: expected an object with a boolean 'passed'")
    if gate.get("task", task) != task:
        raise UserError(f"{path} is the gate of task {gate['task']!r}, not of base.task {task!r}")
    judged = gate.get("model")
    if judged and (root / judged).resolve() != model.resolve():
        raise UserError(f"{path} judged {judged}, not the trained model {model}: rerun the gate")
    return gate


def read_metrics(path: Path, task: str) -> dict[str, float]:
    """The numeric metrics of ``task`` in the evaluation's flat metrics.json."""
    metrics = read_json(path, "evaluate")
    if not isinstance(metrics, dict):
        raise UserError(f"{path}: expected an object of flat metric keys")
    ours = {
        k: float(v)
        for k, v in metrics.items()
        if k.startswith(f"{task}/") and isinstance(v, int | float) and not isinstance(v, bool)
    }
    if metrics and not ours:
        tasks = sorted({str(k).split("/")[0] for k in metrics})
        raise UserError(f"{path} has no metrics of task {task!r} (it has {', '.join(tasks)})")
    return ours


def without_none(obj: Any) -> Any:
    """``obj`` with every None left out (BentoML metadata has no null)."""
    if isinstance(obj, Mapping):
        return {str(k): without_none(v) for k, v in obj.items() if v is not None}
    if isinstance(obj, list | tuple):
        return [without_none(v) for v in obj if v is not None]
    return obj


def git_commit(root: Path) -> str | None:
    """The checkout's HEAD commit (None outside a git repository)."""
    from scmrepo.exceptions import SCMError
    from scmrepo.git import Git

    try:
        with Git(root) as scm:
            return str(scm.get_rev())
    except SCMError as exc:
        log.warning("no git commit: %s", exc)
        return None


def lineage(params: Params, root: Path, gate: Mapping[str, Any], forced: bool) -> dict[str, Any]:
    """The model's metadata: metrics, gate decision, recommended rate, data version, commit,
    resolved params (YAML text) and the training run's key facts."""
    layout = Layout.of(params, root)
    task = params.base.task
    metrics_path = layout.eval_dir / METRICS_FILE
    metrics = read_metrics(metrics_path, task) if metrics_path.is_file() or not forced else {}
    rate = gate.get("recommended_rate", metrics.get(f"{task}/recommended_rate"))
    run_file = layout.trained_model / RUN_RECORD
    run = json.loads(run_file.read_text(encoding="utf-8")) if run_file.is_file() else {}
    return without_none(
        {
            "task": task,
            "metrics": metrics,
            "gate_passed": gate.get("passed"),
            "gate_metric": gate.get("metric"),
            "gate_reasons": gate.get("reasons"),
            "gate_checks": gate.get("checks"),
            "champion": gate.get("champion"),
            "forced": forced,
            "recommended_rate": rate,
            "data_version": data_version(params, root),
            "git_commit": git_commit(root),
            "params": yaml.safe_dump(to_dict(params), sort_keys=False),
            "train": {k: run.get(k) for k in RUN_KEYS},
        }
    )


def llm_tokenizer(params: Params) -> Any:
    """The target LLM's tokenizer, packaged with the model so the service counts a rate in
    the tokens the evaluation measured it in; None (budgets in encoder tokens, logged) when
    it cannot be loaded here."""
    from taco.llm import LLMError, load_llm_tokenizer

    try:
        return load_llm_tokenizer(params.llm)
    except LLMError as exc:
        log.warning("%s: the service will count budgets in the encoder's tokens", exc)
        return None


def bentofile(root: Path) -> Path:
    """``<root>/bentofile.yaml``, else the one beside the taco package (a source checkout)."""
    for candidate in (root / BENTOFILE, Path(taco.__file__).resolve().parents[1] / BENTOFILE):
        if candidate.is_file():
            return candidate
    raise UserError(f"{root / BENTOFILE} not found: the bento build spec is missing")


def build_bento(params: Params, root: Path, model_tag: str) -> str:
    """``bentoml build`` of the service for ``model_tag`` from a staged build context (the
    bentofile, the taco sources and the resolved params as the service's params file);
    returns the bento tag. No network: bentofile.yaml sets ``lock_packages: false``."""
    name = registry.model_name(params)
    with tempfile.TemporaryDirectory(prefix="taco-bento-") as tmp:
        ctx = Path(tmp)
        shutil.copy(bentofile(root), ctx / BENTOFILE)
        shutil.copytree(
            Path(taco.__file__).parent,
            ctx / "taco",
            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
        )
        (ctx / PARAMS_FILE).write_text(
            yaml.safe_dump(to_dict(params), sort_keys=False), encoding="utf-8"
        )
        cmd = [
            sys.executable, "-m", "bentoml", "build", str(ctx),
            "--bentofile", str(ctx / BENTOFILE),
            "--name", name,
            "--arg", f"model={model_tag}",
            "--label", f"{registry.MODEL_LABEL}={model_tag}",
            "--label", f"{registry.TASK_LABEL}={params.base.task}",
            "--output", "tag",
        ]  # fmt: skip
        path = [str(ctx), *filter(None, [os.environ.get("PYTHONPATH")])]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(path)}
        proc = subprocess.run(cmd, cwd=ctx, env=env, capture_output=True, text=True, check=False)
    tags = [ln.split(":", 1)[1] for ln in proc.stdout.splitlines() if ln.startswith("__tag__:")]
    if proc.returncode != 0 or not tags:
        tail = (proc.stderr or proc.stdout).strip().splitlines()
        raise StageFailed(f"bentoml build failed: {tail[-1] if tail else proc.returncode}")
    log.info("built bento %s for %s", tags[-1], model_tag)
    return tags[-1]


def run(params: Params, root: Path, *, force: bool = False) -> dict[str, Any]:
    """Register ``data/models/taco/`` as a BentoML candidate and build its bento; returns
    (and writes to package.json) {model_tag, bento_tag, forced, gate_passed,
    recommended_rate, data_version}."""
    layout = Layout.of(params, root)
    model = layout.trained_model
    if not (model / "config.json").is_file():
        raise UserError(f"{model}: no trained model there; run `taco train` (dvc repro) first")
    try:
        gate = read_gate(layout.gate_report, params.base.task, model, root)
    except UserError:
        if not force:
            raise
        log.warning("packaging without a readable gate.json because of --force")
        gate = {"passed": False, "reasons": ["no gate.json"]}
    if not gate["passed"]:
        reasons = "; ".join(map(str, gate.get("reasons") or [])) or "no reason given"
        if not force:
            raise UserError(f"the gate did not pass ({reasons}); not packaging (--force overrides)")
        log.warning("packaging a model the gate refused (%s) because of --force", reasons)
    forced = force and not gate["passed"]
    tokenizer = llm_tokenizer(params)
    meta = lineage(params, root, gate, forced)
    meta["budget_tokens"] = "encoder" if tokenizer is None else "llm"
    record = registry.register(
        model, registry.model_name(params), params.base.task, meta, budget_tokenizer=tokenizer
    )
    bento = build_bento(params, root, record.tag) if params.package.build else None
    report = {
        "model_tag": record.tag,
        "bento_tag": bento,
        "forced": forced,
        "gate_passed": gate["passed"],
        "recommended_rate": meta.get("recommended_rate"),
        "data_version": meta.get("data_version"),
    }
    write_atomic(layout.package_report, json.dumps(report, indent=2) + "\n")
    return report
