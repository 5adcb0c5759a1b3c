"""The `teacher` stage: the target LLM's output on every uncompressed prompt of the prepared splits.

Reads ``<data_dir>/prepared/<task>/{split}.jsonl`` (Example rows) and writes
``<data_dir>/teacher/<task>/{split}.jsonl`` — one row per example: ``id``, ``task``, ``output``
(``null`` when the LLM gave none), ``context_tokens`` (L_o: the context's length in target-LLM
tokens) — plus ``meta.json`` (model, decoding, counts,
timing, cache hit rate). Prompts go to the LLM in chunks of ``teacher.chunk_size``; every
answered chunk lands in the LLM cache, so an interrupted run resumes almost for free. Files
are written to a temp name and renamed.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from taco.config import Params, to_dict
from taco.data.files import DataFileError, dump_jsonl, read_examples, read_jsonl, write_atomic
from taco.data.schema import Example
from taco.errors import StageFailed
from taco.layout import TEACHER_META, Layout
from taco.llm import build_llm
from taco.llm.base import LLM
from taco.tasks.registry import TaskSpec, get_task

log = logging.getLogger(__name__)


class TeacherError(StageFailed):
    """The teacher stage cannot produce trustworthy outputs (too many failed calls)."""


def teacher_outputs(
    llm: LLM,
    task: TaskSpec,
    examples: Sequence[Example],
    *,
    max_new_tokens: int,
    chunk_size: int = 64,
    progress: Any = None,
) -> list[str | None]:
    """The LLM's greedy output on each example's uncompressed prompt (None where it failed)."""
    outputs: list[str | None] = []
    for start in range(0, len(examples), chunk_size):
        chunk = examples[start : start + chunk_size]
        prompts = [task.prompt(ex.context, ex.question) for ex in chunk]
        outputs.extend(llm.generate(prompts, max_new_tokens))
        if progress is not None:
            progress.update(len(chunk))
    return outputs


def run_teacher(
    params: Params,
    *,
    llm: LLM | None = None,
    task_name: str | None = None,
    splits: Sequence[str] | None = None,
    limit: int | None = None,
    root: Path = Path("."),
) -> dict[str, Any]:
    """Run the stage for ``base.task`` (or ``task_name``); returns the meta record it writes."""
    from tqdm.auto import tqdm

    task_name = task_name or params.base.task
    task = get_task(task_name, params)
    splits = tuple(splits or params.teacher.splits)
    layout = dataclasses.replace(Layout.of(params, root), task=task_name)
    dst = layout.teacher_dir
    examples = {s: read_examples(layout.split(s))[:limit] for s in splits}
    llm = llm or build_llm(params.llm)
    total = sum(len(v) for v in examples.values())
    log.info("teacher: %d prompts of task %s (%s)", total, task_name, ", ".join(splits))
    started = time.perf_counter()
    counts: dict[str, dict[str, int]] = {}
    with tqdm(total=total, desc=f"teacher {task_name}", unit="prompt") as bar:
        for split, rows in examples.items():
            outs = teacher_outputs(
                llm,
                task,
                rows,
                max_new_tokens=params.llm.max_new_tokens,
                chunk_size=params.teacher.chunk_size,
                progress=bar,
            )
            lengths = llm.count_tokens([ex.context for ex in rows]) if rows else []
            rows_out = (
                {"id": ex.id, "task": ex.task, "output": out, "context_tokens": n}
                for ex, out, n in zip(rows, outs, lengths, strict=True)
            )
            write_atomic(layout.teacher_split(split), dump_jsonl(rows_out))
            failed = sum(o is None for o in outs)
            counts[split] = {"rows": len(rows), "failed": failed}
            if rows and failed / len(rows) > params.teacher.max_failed_fraction:
                raise TeacherError(
                    f"teacher: {failed} of {len(rows)} {split} prompts got no answer "
                    f"(> teacher.max_failed_fraction={params.teacher.max_failed_fraction}); "
                    "check the LLM endpoint and rerun (answers so far are cached)"
                )
    meta = {
        "task": task_name,
        "template": task.template,
        "llm": dict(llm.identity),
        "llm_params": to_dict(params.llm),
        "max_new_tokens": params.llm.max_new_tokens,
        "splits": counts,
        "seconds": round(time.perf_counter() - started, 3),
        "metrics": llm.metrics(),
    }
    write_atomic(dst / TEACHER_META, json.dumps(meta, indent=2, ensure_ascii=False) + "\n")
    log.info("teacher: wrote %s in %.1f s (%s)", dst, meta["seconds"], meta["metrics"])
    return meta


def read_teacher_outputs(path: Path) -> dict[str, tuple[str | None, int]]:
    """``id -> (output, context_tokens)`` of a teacher file written by ``run_teacher``
    (``output`` is None where the LLM gave no answer). Raises ``DataFileError`` naming the
    file (and line) when it is missing or a row is malformed."""
    if not path.is_file():
        raise DataFileError(f"teacher outputs not found: {path} (run `taco teacher`)")
    outputs: dict[str, tuple[str | None, int]] = {}
    for n, row in read_jsonl(path):
        try:
            outputs[row["id"]] = (row.get("output"), int(row["context_tokens"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise DataFileError(f"{path}:{n}: not a teacher row ({exc!r})") from None
    return outputs


def run(
    params: Params,
    root: Path = Path("."),
    *,
    task: str | None = None,
    split: Sequence[str] | None = None,
    limit: int | None = None,
) -> dict[str, Any]:
    """The ``teacher`` stage (``task``/``split``/``limit``: smoke runs of part of it); returns
    rows and failures per split and the seconds taken."""
    meta = run_teacher(params, task_name=task, splits=split, limit=limit, root=root)
    return {"splits": meta["splits"], "seconds": meta["seconds"]}
