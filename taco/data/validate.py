"""`taco validate`: the Great Expectations gate on prepared data (one suite per frame/task)."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from taco.config import SPLITS, Params
from taco.data.files import (
    read_json,
    read_jsonl,
    words,
    write_atomic,
)
from taco.errors import StageFailed
from taco.layout import STATS_FILE, Layout

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

_COLUMNS = ("id", "task", "context", "question", "references", "group", "source")


def _first_reference(refs: Any) -> str | None:
    if isinstance(refs, list | tuple):
        refs = [r for r in refs if isinstance(r, str) and r.strip()]
        return refs[0] if refs else None
    return None


def _answer_in_context(row: Mapping[str, Any]) -> bool:
    refs, context = row.get("references"), row.get("context")
    if not isinstance(refs, list | tuple) or not isinstance(context, str):
        return False
    return any(isinstance(r, str) and r and r in context for r in refs)


def _reference_words(refs: Any) -> list[int]:
    if not isinstance(refs, list | tuple):
        return []
    return [words(r) for r in refs if isinstance(r, str)]


def split_frame(rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Prepared rows as a frame with the derived columns the expectations read."""
    import pandas as pd

    frame = pd.DataFrame(list(rows), columns=list(_COLUMNS)).astype(object)
    frame = frame.where(frame.notna(), None)
    frame["reference"] = [_first_reference(r) for r in frame["references"]]
    frame["context_words"] = [words(c) if isinstance(c, str) else None for c in frame["context"]]
    ref_words = [_reference_words(r) for r in frame["references"]]
    frame["reference_words_min"] = [min(n) if n else None for n in ref_words]
    frame["reference_words_max"] = [max(n) if n else None for n in ref_words]
    frame["answer_in_context"] = [_answer_in_context(r) for r in rows]
    return frame


def build_frames(
    splits: Mapping[str, Sequence[Mapping[str, Any]]], stats: Mapping[str, Any]
) -> dict[str, pd.DataFrame]:
    """Frames per split, over all splits, per group (how many splits hold it), and the stats."""
    import pandas as pd

    frames: dict[str, pd.DataFrame] = {s: split_frame(splits[s]) for s in SPLITS}
    everything = pd.concat([frames[s].assign(split=s) for s in SPLITS], ignore_index=True)
    frames["all"] = everything
    grouped = everything.dropna(subset=["group"]).groupby("group")["split"].nunique()
    frames["groups"] = pd.DataFrame({"group": grouped.index.astype(str), "splits": grouped.values})
    frames["stats"] = pd.DataFrame(
        [{"id": "stats", "dropped_share": float(stats.get("dropped_share", 1.0))}]
    )
    return frames


def expectations(params: Params) -> list[tuple[str, Any]]:
    """(frame name, expectation) pairs of the task's suite."""
    import great_expectations.expectations as gxe

    p, v, task = params.prepare, params.validate, params.base.task
    out: list[tuple[str, Any]] = []
    for split in SPLITS:
        required = ("id", "context", "reference", "group", *(("question",) if task == "qa" else ()))
        for column in required:
            out.append((split, gxe.ExpectColumnValuesToNotBeNull(column=column)))
            out.append((split, gxe.ExpectColumnValuesToMatchRegex(column=column, regex=r"\S")))
        out += [
            (split, gxe.ExpectColumnValuesToBeInSet(column="task", value_set=[task])),
            (
                split,
                gxe.ExpectColumnValuesToBeBetween(
                    column="context_words",
                    min_value=p.min_context_words,
                    max_value=p.max_context_words,
                ),
            ),
            (
                split,
                gxe.ExpectColumnValuesToBeBetween(
                    column="reference_words_min", min_value=p.min_reference_words
                ),
            ),
            (
                split,
                gxe.ExpectColumnValuesToBeBetween(
                    column="reference_words_max", max_value=p.max_reference_words
                ),
            ),
            (split, gxe.ExpectTableRowCountToBeBetween(min_value=v.min_rows.get(split, 0))),
        ]
        if task == "qa" and v.require_answer_in_context:
            out.append(
                (
                    split,
                    gxe.ExpectColumnValuesToBeInSet(column="answer_in_context", value_set=[True]),
                )
            )
    out += [
        ("all", gxe.ExpectColumnValuesToBeUnique(column="id")),
        ("groups", gxe.ExpectColumnValuesToBeBetween(column="splits", min_value=1, max_value=1)),
        (
            "stats",
            gxe.ExpectColumnValuesToBeBetween(
                column="dropped_share", min_value=0.0, max_value=v.max_dropped_share
            ),
        ),
    ]
    return out


def _describe(frame: str, result: Any, n_ids: int) -> dict[str, Any]:
    d = result.to_json_dict()
    cfg, res = d["expectation_config"], d.get("result") or {}
    kwargs = {k: v for k, v in cfg["kwargs"].items() if k != "batch_id"}
    column = kwargs.get("column")
    key = "group" if frame == "groups" else "id"
    examples = [row.get(key) for row in res.get("unexpected_index_list") or []]
    out = {
        "name": f"{frame}: {cfg['type']}" + (f"({column})" if column else ""),
        "frame": frame,
        "expectation": cfg["type"],
        "kwargs": kwargs,
        "success": bool(d["success"]),
        "unexpected_count": int(res.get("unexpected_count") or 0),
        "examples": list(dict.fromkeys(str(e) for e in examples))[:n_ids],
    }
    if "observed_value" in res:
        out["observed_value"] = res["observed_value"]
    return out


def quiet_gx() -> None:
    """GX logs every import and step at INFO (some modules pin INFO): keep them at WARNING."""
    names = [n for n in logging.root.manager.loggerDict if n.startswith("great_expectations.")]
    for name in ("great_expectations", "great_expectations._docs_decorators", *names):
        logging.getLogger(name).setLevel(logging.WARNING)


def run_suites(frames: Mapping[str, pd.DataFrame], params: Params) -> list[dict[str, Any]]:
    """Validate each frame against its expectations in an ephemeral GX context."""
    quiet_gx()
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    quiet_gx()  # again: importing GX may reconfigure its loggers

    ctx = gx.get_context(mode="ephemeral")
    ctx.variables.progress_bars = ProgressBarsConfig(globally=False)
    source = ctx.data_sources.add_pandas("prepared")
    by_frame: dict[str, list[Any]] = {}
    for frame, expectation in expectations(params):
        by_frame.setdefault(frame, []).append(expectation)
    results = []
    for frame, exps in by_frame.items():
        batch_def = source.add_dataframe_asset(frame).add_batch_definition_whole_dataframe("all")
        suite = ctx.suites.add(gx.ExpectationSuite(name=f"{params.base.task}-{frame}"))
        for expectation in exps:
            suite.add_expectation(expectation)
        key = "group" if frame == "groups" else "id"
        fmt = {"result_format": "COMPLETE", "unexpected_index_column_names": [key]}
        batch = batch_def.get_batch(batch_parameters={"dataframe": frames[frame]})
        outcome = batch.validate(suite, result_format=fmt)
        results += [_describe(frame, r, params.validate.example_ids) for r in outcome.results]
    return results


def summary(report: Mapping[str, Any]) -> str:
    """One paragraph a person can act on."""
    failed = [e for e in report["expectations"] if not e["success"]]
    if not failed:
        return (
            f"Validation of the {report['task']} data passed: all "
            f"{len(report['expectations'])} expectations hold."
        )
    parts = []
    for e in failed:
        detail = f"{e['unexpected_count']} unexpected" if e["unexpected_count"] else ""
        if "observed_value" in e and not e["unexpected_count"]:
            detail = f"observed {e['observed_value']}"
        if e["examples"]:
            detail += f", e.g. {', '.join(e['examples'][:3])}"
        parts.append(f"{e['name']} ({detail})")
    return (
        f"Validation of the {report['task']} data FAILED: {len(failed)} of "
        f"{len(report['expectations'])} expectations failed: {'; '.join(parts)}. Nothing "
        f"downstream may run on this data; fix the source or the prepare params and rerun "
        f"(details in {report['report']})."
    )


def validate(params: Params, root: Path = Path(".")) -> dict[str, Any]:
    """Run the gate on the prepared splits, write the report, and return it."""
    layout = Layout.of(params, root)
    splits = {s: [row for _, row in read_jsonl(layout.split(s))] for s in SPLITS}
    stats = read_json(layout.prepared_dir / STATS_FILE)
    results = run_suites(build_frames(splits, stats), params)
    out = layout.validation_report
    report = {
        "task": params.base.task,
        "success": all(r["success"] for r in results),
        "evaluated": len(results),
        "failed": sum(not r["success"] for r in results),
        "report": str(out.relative_to(root)) if out.is_relative_to(root) else str(out),
        "expectations": results,
    }
    write_atomic(out, json.dumps(report, indent=2, default=str) + "\n")
    log.info("validate: %d/%d expectations hold", len(results) - report["failed"], len(results))
    return report


def run(params: Params, root: Path = Path(".")) -> dict[str, Any]:
    """The ``validate`` stage: returns the counts of the report it writes; raises
    ``StageFailed`` with the one-paragraph summary when any expectation fails."""
    report = validate(params, root)
    if not report["success"]:
        raise StageFailed(summary(report))
    log.info(summary(report))
    return {k: report[k] for k in ("task", "success", "evaluated", "failed", "report")}
