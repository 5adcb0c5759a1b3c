"""taco_reproduce: bring back a packaged model's data version and check that its scores hold.

``setup`` looks the model up in the BentoML store (a model tag, or a bento tag whose
``model`` label names it), restores the raw snapshot its metadata records from the DVC
remote, byte for byte, into a scratch project ``<data_dir>/reproduce/<model>/`` with the
model's own files and its recorded params; ``prepare``, ``validate``, ``teacher`` and
``evaluate`` then run there through the taco CLI (``taco.pipeline.run_cli``); ``check``
compares the reproduced scores of the trained compressor with the recorded ones.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from taco.config import load_params
from taco.errors import StageFailed, UserError
from taco.layout import METRICS_FILE, Layout

log = logging.getLogger(__name__)

#: Recorded metrics that measure time, not quality: never compared.
TIMING_HINTS = ("latency", "seconds", "_ms")


def _model_record(tag: str) -> Any:
    """The registry's record of model ``tag``, or of the model a bento ``tag`` serves."""
    from taco.serving import registry

    try:
        return registry.get_model(tag)
    except UserError as model_error:
        import bentoml
        from bentoml.exceptions import BentoMLException

        try:
            bento = bentoml.get(tag)
        except (BentoMLException, ValueError):
            raise model_error from None
        model_tag = bento.info.labels.get(registry.MODEL_LABEL)
        if not model_tag:
            raise UserError(f"bento {tag!r} has no {registry.MODEL_LABEL!r} label") from None
        return registry.get_model(model_tag)


def setup(tag: str, root: Path) -> dict[str, Any]:
    """Make the scratch project of model (or bento) ``tag`` in the workspace ``root``.

    Returns ``{"model_tag", "name", "data_version", "scratch", "params_file", "recorded"}``
    (``recorded``: the model's packaged metrics). ``UserError`` when the model is unknown
    or its metadata lacks the data version or the params."""
    from taco.versioning import remote_url, restore

    record = _model_record(tag)
    meta = record.metadata
    version, recorded_params = meta.get("data_version"), meta.get("params")
    if not version or not recorded_params:
        raise UserError(f"model {record.tag}: its metadata has no data_version or params")
    workspace = load_params(root / "params.yaml")
    name = record.tag.replace(":", "-")
    scratch = (Layout.of(workspace, root).reproduce_dir / name).resolve()
    shutil.rmtree(scratch, ignore_errors=True)
    sections = yaml.safe_load(recorded_params)
    sections["base"]["data_dir"] = str(scratch / "data")
    sections["ingest"]["remote"] = remote_url(workspace.ingest.remote, root)
    sections.setdefault("gate", {})["champion"] = None  # today's champion is another model
    params_file = scratch / "params.yaml"
    params_file.parent.mkdir(parents=True)
    params_file.write_text(yaml.safe_dump(sections, sort_keys=False), encoding="utf-8")
    params = load_params(params_file)
    lay = Layout.of(params, root)
    restore(params, root, rev=version, out=lay.raw_dir)
    shutil.copytree(record.path, lay.trained_model)
    log.info("reproduce: %s, data %s restored into %s", record.tag, version, scratch)
    return {
        "model_tag": record.tag,
        "name": name,
        "data_version": version,
        "scratch": str(scratch),
        "params_file": str(params_file),
        "recorded": dict(meta.get("metrics") or {}),
    }


def compare(
    recorded: Mapping[str, Any], reproduced: Mapping[str, Any], tolerance: float
) -> dict[str, Any]:
    """Every recorded score of the trained compressor (``<task>/rate_<r>/trained/<metric>``,
    timings left out) against the reproduced one: ``{"match", "compared", "max_abs_diff",
    "mismatches": [{"key", "recorded", "reproduced", "diff"}]}``. A key missing from
    ``reproduced`` is a mismatch; a score that is NaN/None on both sides matches."""
    mismatches, worst, compared = [], 0.0, 0
    for key in sorted(recorded):
        parts = key.split("/")
        if len(parts) != 4 or parts[2] != "trained" or any(h in parts[3] for h in TIMING_HINTS):
            continue
        compared += 1
        old, new = _number(recorded[key]), _number(reproduced.get(key))
        if math.isnan(old) and math.isnan(new):
            continue
        diff = abs(old - new) if not (math.isnan(old) or math.isnan(new)) else math.inf
        worst = max(worst, diff)
        if diff > tolerance:
            mismatches.append(
                {"key": key, "recorded": recorded[key], "reproduced": reproduced.get(key),
                 "diff": diff}
            )  # fmt: skip
    return {
        "match": not mismatches and compared > 0,
        "compared": compared,
        "max_abs_diff": worst,
        "tolerance": tolerance,
        "mismatches": mismatches,
    }


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return math.nan
    return float(value)


def check(scratch: Mapping[str, Any], root: Path, tolerance: float) -> dict[str, Any]:
    """Compare the scratch project's reproduced metrics with the recorded ones, write
    ``reports/reproduce/<name>.json`` in the workspace, and return the comparison;
    ``StageFailed`` naming the scores that moved when they do not match."""
    params = load_params(Path(scratch["params_file"]))
    reproduced = json.loads((Layout.of(params, root).eval_dir / METRICS_FILE).read_text())
    result = {
        "model_tag": scratch["model_tag"],
        "data_version": scratch["data_version"],
        **compare(scratch["recorded"], reproduced, tolerance),
    }
    out = Layout.of(load_params(root / "params.yaml"), root).reproduce_report(scratch["name"])
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, out)
    if not result["match"]:
        moved = ", ".join(
            f"{m['key']} {m['recorded']} -> {m['reproduced']}" for m in result["mismatches"]
        )
        raise StageFailed(
            f"model {scratch['model_tag']} does not reproduce within {tolerance}: "
            f"{moved or 'no recorded score of the trained compressor'} (report: {out})"
        )
    log.info(
        "reproduce: %s matches: %d scores within %g (largest difference %.3g); report %s",
        scratch["model_tag"], result["compared"], tolerance, result["max_abs_diff"], out,
    )  # fmt: skip
    return result
