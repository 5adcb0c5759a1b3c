"""A project ready for `taco package`: a tiny trained-format compressor, and the evaluation's
metrics.json and the gate's gate.json in the shapes of the evaluate/gate contract (written
here because those stages are built elsewhere)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.helpers.training import tiny_encoder_folder, write_params

TASK = "code"
RATES = (0.33, 0.5)


def write_trained_model(root: Path, *, seed: int = 0) -> Path:
    """``data/models/taco/``: a tiny 2-label BERT with the embedded tokenizer + taco_run.json."""
    folder = root / "data" / "models" / "taco"
    folder.mkdir(parents=True, exist_ok=True)
    tiny_encoder_folder(folder, classifier=True, seed=seed)
    run = {"steps": 4, "kept_step": 4, "git_commit": None, "weights_sha256": f"seed-{seed}"}
    (folder / "taco_run.json").write_text(json.dumps(run), encoding="utf-8")
    return folder


def metrics(task: str = TASK, recommended_rate: float | None = 0.5) -> dict[str, Any]:
    """Flat evaluation metrics: ``<task>/rate_<r>/<compressor>/<metric>``, CI keys and
    ``<task>/recommended_rate``."""
    out: dict[str, Any] = {}
    for r in RATES:
        for comp, bleu in (("trained", 0.30 + r / 10), ("truncate", 0.25 + r / 10)):
            out[f"{task}/rate_{r}/{comp}/bleu"] = round(bleu, 4)
            out[f"{task}/rate_{r}/{comp}/achieved_rate"] = r - 0.01
        for part, v in (("delta", 0.05), ("ci_low", 0.01), ("ci_high", 0.09)):
            out[f"{task}/rate_{r}/trained_vs_truncate/bleu/{part}"] = v
    out[f"{task}/recommended_rate"] = recommended_rate
    return out


def gate(
    passed: bool = True,
    *,
    task: str = TASK,
    recommended_rate: float | None = 0.5,
    model: str = "data/models/taco",
    champion: str | None = None,
) -> dict[str, Any]:
    """A gate.json: one check per kind, failing ones with a reason."""
    check = {
        "name": "min_gain_vs_truncate",
        "passed": passed,
        "value": 0.05 if passed else -0.02,
        "threshold": 0.0,
        "reason": "" if passed else "trained does not beat truncate at rate 0.5 (-0.02 <= 0)",
    }
    return {
        "task": task,
        "passed": passed,
        "metric": "bleu",
        "checks": [check],
        "reasons": [] if passed else [check["reason"]],
        "recommended_rate": recommended_rate,
        "model": model,
        "champion": champion,
    }


def write_reports(
    root: Path,
    *,
    gate_json: dict[str, Any] | None = None,
    metrics_json: dict[str, Any] | None = None,
) -> None:
    """``data/reports/gate.json`` and ``data/reports/eval/metrics.json``."""
    reports = root / "data" / "reports"
    (reports / "eval").mkdir(parents=True, exist_ok=True)
    (reports / "gate.json").write_text(json.dumps(gate_json or gate()), encoding="utf-8")
    (reports / "eval" / "metrics.json").write_text(
        json.dumps(metrics_json or metrics()), encoding="utf-8"
    )


def write_dvc_lock(root: Path, md5: str = "0123456789abcdef0123456789abcdef.dir") -> str:
    """A dvc.lock whose ingest output (the data version) has ``md5``."""
    lock = {
        "schema": "2.0",
        "stages": {
            "ingest": {
                "cmd": "python -m taco ingest",
                "outs": [{"path": f"data/raw/{TASK}", "hash": "md5", "md5": md5}],
            }
        },
    }
    (root / "dvc.lock").write_text(json.dumps(lock), encoding="utf-8")
    return md5


def package_project(
    root: Path,
    *,
    passed: bool = True,
    build: bool = False,
    serve: dict[str, Any] | None = None,
    seed: int = 0,
    llm: dict[str, Any] | None = None,
) -> Path:
    """Model, reports, dvc.lock and params.yaml for `taco package` in ``root``; returns the
    params file (``data_dir`` is ``root/data``)."""
    write_trained_model(root, seed=seed)
    write_reports(root, gate_json=gate(passed))
    write_dvc_lock(root)
    sections = {
        "base": {"task": TASK, "data_dir": "data"},
        "package": {"build": build},
        "serve": serve or {},
        "llm": llm or {},
    }
    return write_params(root, sections)
