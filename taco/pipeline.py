"""A pipeline run as the Airflow DAGs make it: one stage at a time, its lineage, its summary.

One stage = ``dvc repro --single-item <stage>`` in the workspace (a git + DVC checkout of the
project). DVC runs the stage's ``python -m taco <stage>`` only when its code, params or input
data changed (an unchanged stage costs about a second, so a retried or repeated run is
cheap), and records what ran in ``dvc.lock``: the lineage record that ``taco data restore``
and the model's metadata read. The same command runs on a laptop, in CI and in Airflow.

A run's own settings (the DAG's ``conf``) are written into the workspace's params.yaml before
the stage runs, comments kept, the way ``dvc exp run --set-param`` does: dvc.lock then records
them, and they stay until changed.
"""

from __future__ import annotations

import collections
import contextlib
import difflib
import io
import json
import logging
import os
import re
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from taco.config import ConfigError, Params, load_params
from taco.errors import StageFailed, UserError
from taco.layout import RUN_RECORD, Layout
from taco.overlay import deep_merge

log = logging.getLogger(__name__)

#: Per-run settings of taco_retrain (its Airflow params) → the params.yaml key each sets.
RUN_SETTINGS: dict[str, str] = {
    "task": "base.task",
    "format": "ingest.format",
    "source": "ingest.path",
    "rates": "evaluate.rates",
    "steps": "train.steps",
}
#: Every key a taco_retrain run's conf may hold: its Airflow params.
RUN_CONF_KEYS: tuple[str, ...] = (*RUN_SETTINGS, "params")

_TACO_LINE = re.compile(r"^taco: (error|failed): (.*)$")
# DVC's words when another process holds its lock (dvc/rwlock.py, dvc/lock.py)
_DVC_LOCKED = ("is busy, it is being blocked by", "Unable to acquire lock")
_EXIT = re.compile(r"exited with (-?\d+)")


class StageCrashed(RuntimeError):
    """A stage ended without saying why (killed, out of memory, a bug): worth a retry."""


def run_overlay(conf: Mapping[str, Any]) -> dict[str, Any]:
    """The nested params overlay of a run's settings: every ``RUN_SETTINGS`` key whose value
    is not None, then ``conf["params"]`` (a nested mapping of params.yaml sections) over it.

    Raises ``ConfigError`` for a key that is not in ``RUN_CONF_KEYS`` (Airflow validates the
    values of the DAG's params but keeps any other conf key as a new param, so a typo such as
    ``step`` would be ignored), naming it, the closest allowed key and every allowed one; and
    for a ``params`` that is not a mapping."""
    check_run_conf(conf)
    overlay: dict[str, Any] = {}
    for name, dotted in RUN_SETTINGS.items():
        value = conf.get(name)
        if value is None:
            continue
        *sections, key = dotted.split(".")
        node = overlay
        for part in sections:
            node = node.setdefault(part, {})
        node[key] = list(value) if isinstance(value, list | tuple) else value
    extra = conf.get("params") or {}
    if not isinstance(extra, Mapping):
        raise ConfigError(f"run settings: params must be a mapping of sections, got {extra!r}")
    return deep_merge(overlay, extra)


def check_run_conf(conf: Mapping[str, Any], allowed: Sequence[str] = RUN_CONF_KEYS) -> None:
    """Raise ``ConfigError`` when ``conf`` holds a key that is not in ``allowed`` (a DAG's
    params; default taco_retrain's): one line naming each unknown key, its closest allowed
    key if any, and the allowed keys."""
    if not isinstance(conf, Mapping):
        raise ConfigError(f"run settings must be a JSON object, got {type(conf).__name__}")
    unknown = sorted(set(conf) - set(allowed), key=str)
    if not unknown:
        return
    named = []
    for key in unknown:
        close = difflib.get_close_matches(str(key), allowed, n=1)
        named.append(f"{key!r} (did you mean {close[0]!r}?)" if close else repr(key))
    hint = " (params.yaml sections go under 'params')" if "params" in allowed else ""
    raise ConfigError(
        f"run settings: unknown key(s) {', '.join(named)}; allowed: {', '.join(allowed)}{hint}"
    )


def _yaml() -> Any:
    from ruamel.yaml import YAML

    rt = YAML()  # round trip: comments, order and quoting of params.yaml survive
    rt.preserve_quotes = True
    rt.width = 4096
    rt.representer.add_representer(
        type(None), lambda r, _: r.represent_scalar("tag:yaml.org,2002:null", "null")
    )
    return rt


def set_params(path: Path, overlay: Mapping[str, Any]) -> bool:
    """Write ``overlay`` into the params file ``path`` (comments kept), atomically, after
    validating the result (``base.task`` must be a registered task); return whether anything
    changed. ``ConfigError`` names a bad key or value, and ``path`` is then left as it was."""
    if not overlay:
        return False
    rt = _yaml()
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    doc = rt.load(text) or {}

    def put(node: Any, over: Mapping[str, Any]) -> None:
        for key, value in over.items():
            if isinstance(value, Mapping) and isinstance(node.get(key), Mapping):
                put(node[key], value)
            else:
                node[key] = value if not isinstance(value, Mapping) else dict(value)

    put(doc, overlay)
    buf = io.StringIO()
    rt.dump(doc, buf)
    if buf.getvalue() == text:
        return False
    from taco.tasks.registry import get_task

    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(buf.getvalue(), encoding="utf-8")
    try:
        get_task(load_params(tmp).base.task)  # a task this pipeline knows, or ConfigError
    except ConfigError as exc:
        tmp.unlink(missing_ok=True)
        raise ConfigError(f"the run's settings: {str(exc).replace(str(tmp), str(path))}") from None
    os.replace(tmp, path)
    log.info("params: wrote the run's settings %s into %s", json.dumps(overlay), path)
    return True


def run_stage(
    stage: str, root: Path, conf: Mapping[str, Any] | None = None, *, push: bool = False
) -> dict[str, Any]:
    """Run ``stage`` with ``dvc repro --single-item`` in the workspace ``root``.

    ``conf``: the run's settings (see ``run_overlay``), written into params.yaml first.
    ``push``: afterwards, send the DVC-tracked outputs to the remote (``taco data push``:
    only after a passing validation). The stage's output is logged line by line.

    Returns ``{"stage", "ran", "seconds", "cpu_seconds", "summary"}``: ``ran`` False when DVC
    found the stage up to date or restored its outputs from its run cache; ``cpu_seconds`` of
    the stage's processes; ``summary`` the dict the stage printed, or None.
    Raises ``ConfigError`` (a ``UserError``) for an unknown or bad run setting, before the
    stage runs or params.yaml changes; ``UserError`` / ``StageFailed`` with the stage's own
    one-line message when it exited 2 / 1 (a "no" that a retry will not change),
    ``StageCrashed`` otherwise.
    """
    params_file = root / "params.yaml"
    set_params(params_file, run_overlay(conf or {}))
    result = _run_logged(stage, ["-m", "dvc", "repro", "--single-item", stage], root)
    if push:
        from taco.versioning import push as dvc_push

        dvc_push(load_params(params_file), root)
    return result


def run_cli(stage: str, root: Path, params_file: Path) -> dict[str, Any]:
    """Run ``python -m taco <stage> --params FILE`` in ``root``, outside DVC (a scratch
    project that must not touch the workspace's dvc.lock, as taco_reproduce's). Returns and
    raises as ``run_stage``."""
    return _run_logged(stage, ["-m", "taco", stage, "--params", str(params_file)], root)


def _run_logged(stage: str, args: list[str], root: Path) -> dict[str, Any]:
    """``python ARGS`` in ``root``, every output line logged; see ``run_stage``."""
    bin_dir = str(Path(sys.executable).parent)
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",  # the stage's `python`
        "DVC_NO_ANALYTICS": "1",
        "TQDM_MININTERVAL": os.environ.get("TQDM_MININTERVAL", "15"),  # progress in a log
    }
    log.info("%s: %s (in %s)", stage, " ".join(args[1:]), root)
    start, cpu_start = time.perf_counter(), _children_cpu()
    tail: collections.deque[str] = collections.deque(maxlen=60)
    summary: dict[str, Any] | None = None
    skipped: str | None = None
    with subprocess.Popen(
        [sys.executable, *args],
        cwd=root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as proc:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.rstrip()
            if not line:
                continue
            log.info("%s | %s", stage, line)
            tail.append(line)
            if f"Stage '{stage}' didn't change, skipping" in line:
                skipped = "up to date, skipped"
            elif f"Stage '{stage}' is cached - skipping run" in line:
                skipped = "outputs restored from DVC's run cache"
            if line.startswith("{") and line.endswith("}"):
                with contextlib.suppress(ValueError):
                    summary = json.loads(line)
        code = proc.wait()
    seconds = round(time.perf_counter() - start, 1)
    cpu = round(_children_cpu() - cpu_start, 1)
    if code != 0:
        raise _failure(stage, code, list(tail))
    log.info("%s: %s in %.1f s (CPU %.1f s)", stage, skipped or "done", seconds, cpu)
    return {
        "stage": stage,
        "ran": skipped is None,
        "seconds": seconds,
        "cpu_seconds": cpu,
        "summary": summary,
    }


def _children_cpu() -> float:
    """User + system CPU seconds of this process's finished children (a stage's whole
    process tree once it has been waited for): a figure that a busy machine inflates less
    than wall time."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _how_it_ended(code: int) -> str:
    """``"killed by SIGKILL (exit 137)"`` for a signal, whether the stage's shell reported it
    as -N (the command was exec'd) or 128+N (a shell in between); ``"exited with N"`` else."""
    number = -code if code < 0 else code - 128 if 128 < code < 160 else 0
    try:
        return f"killed by {signal.Signals(number).name} (exit {code})"
    except ValueError:
        return f"exited with {code}"


def _failure(stage: str, code: int, tail: list[str]) -> Exception:
    """The exception for a failed stage command: the stage's own one-line error when it gave
    one (exit 2 ``UserError``, exit 1 ``StageFailed``), else ``StageCrashed`` (saying so when
    another run holds DVC's lock: a retry waits for it)."""
    exits = [int(m.group(1)) for line in tail if (m := _EXIT.search(line))]
    for line in reversed(tail):
        m = _TACO_LINE.match(line)
        if m:
            kind = UserError if m.group(1) == "error" else StageFailed
            return kind(f"{stage}: {m.group(2)}")
    errors = [line for line in tail if line.startswith("ERROR")] or tail or [""]
    if any(m in errors[-1] for m in _DVC_LOCKED):
        return StageCrashed(
            f"{stage}: another run holds DVC's lock on this workspace, so the task is retried "
            f"(two runs at once in one checkout wait for each other); {errors[-1]}"
        )
    how = _how_it_ended(exits[-1]) if exits else f"dvc exited with {code}"
    return StageCrashed(f"{stage}: {how}; {errors[-1]}")


# ------------------------------------------------------------------------- the run's record


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None


def gate_decision(root: Path, params: Params | None = None) -> dict[str, Any]:
    """The gate's decision in the workspace (``data/reports/gate.json``): ``passed`` and
    ``reasons`` (one sentence per failed check), logged; ``UserError`` when it is missing.
    ``params``: default the workspace's params.yaml."""
    params = params or load_params(root / "params.yaml")
    path = Layout.of(params, root).gate_report
    gate = _read_json(path)
    if gate is None:
        raise UserError(f"{path} not found: the gate stage did not write its decision")
    passed = bool(gate.get("passed"))
    reasons = list(gate.get("reasons") or [])
    if passed:
        log.info("gate: passed (%s)", path)
    else:
        log.warning("gate: did not pass, packaging skipped: %s", " ".join(reasons) or "no reason")
    return {"passed": passed, "reasons": reasons}


def lineage(root: Path, params: Params | None = None) -> dict[str, Any]:
    """What the last run in the workspace produced, from its reports and dvc.lock:
    ``task``, ``data_version`` (DVC hash of the raw snapshot), ``model`` (folder),
    ``model_sha256``, ``reward`` (mean reward over the first and last training steps),
    ``gate`` ({passed, reasons} or None), ``recommended_rate``, ``model_tag`` and ``bento_tag``
    (None unless the gate passed and the model was packaged)."""
    from taco.versioning import data_version

    params = params or load_params(root / "params.yaml")
    lay = Layout.of(params, root)
    run = _read_json(lay.trained_model / RUN_RECORD) or {}
    gate = _read_json(lay.gate_report)
    package = (_read_json(lay.package_report) or {}) if gate and gate.get("passed") else {}
    metrics = _read_json(lay.eval_dir / "metrics.json") or {}
    first, last = run.get("first_steps") or {}, run.get("last_steps") or {}
    return {
        "task": params.base.task,
        "data_version": data_version(params, root),
        "model": str(lay.trained_model.relative_to(root)) if run else None,
        "model_sha256": run.get("weights_sha256"),
        "reward": {"first": first.get("reward/mean"), "last": last.get("reward/mean")},
        "gate": (
            {"passed": bool(gate.get("passed")), "reasons": list(gate.get("reasons") or [])}
            if gate
            else None
        ),
        "recommended_rate": (gate or {}).get("recommended_rate")
        or metrics.get(f"{params.base.task}/recommended_rate"),
        "model_tag": package.get("model_tag"),
        "bento_tag": package.get("bento_tag"),
    }


def summary(root: Path, params: Params | None = None) -> str:
    """The run's summary for people: data version, reward curve ends, the evaluation table,
    the gate's decision and reasons, and the bento to serve (or why there is none)."""
    params = params or load_params(root / "params.yaml")
    info = lineage(root, params)
    out = [f"taco run summary ({info['task']})"]
    out.append(f"  data version     {info['data_version'] or '(no dvc.lock entry yet)'}")
    reward = info["reward"]
    if reward["first"] is not None:
        out.append(
            f"  reward/mean      {reward['first']:.4f} (first steps) -> "
            f"{reward['last']:.4f} (last steps)"
        )
    table = _eval_table(root, params)
    if table:
        out.append("  evaluation (test split)")
        out.extend(f"    {line}" for line in table)
    gate = info["gate"]
    if gate is None:
        out.append("  gate             (not run)")
    elif gate["passed"]:
        out.append("  gate             PASSED")
    else:
        out.append("  gate             FAILED: packaging skipped, nothing deployed")
        out.extend(f"    - {reason}" for reason in gate["reasons"])
        out.append(
            "    next: change the gate section of params.yaml (`taco params --explain`) and "
            "`make run` again, or ship anyway with `taco package --force` (logged)"
        )
    rate = info["recommended_rate"]
    out.append(
        f"  recommended rate {rate}"
        if rate is not None
        else "  recommended rate none (no evaluated rate stays within gate.max_quality_loss "
        "of the uncompressed prompt; the service defaults to serve.default_rate, else 0.5)"
    )
    if info["bento_tag"]:
        out.append(f"  model            {info['model_tag']}")
        out.append(f"  bento            {info['bento_tag']}")
        out.append("  serve it         make serve")
    return "\n".join(out) + "\n"


def _eval_table(root: Path, params: Params) -> list[str]:
    """The evaluation table from ``data/reports/eval/metrics.json`` ([] before evaluate)."""
    metrics = _read_json(Layout.of(params, root).eval_dir / "metrics.json")
    if not metrics:
        return []
    from taco.eval.gate import gated_metric
    from taco.eval.report import comparison_table

    metric = gated_metric(params.base.task, params.gate, params.reward.name)
    table = comparison_table(metrics, params.base.task, metric, params.evaluate.confidence)
    return table.splitlines()
