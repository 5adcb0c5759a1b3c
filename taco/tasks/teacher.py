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

import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from taco.config import Params, to_dict
from taco.data.files import dump_jsonl, read_jsonl, write_atomic
from taco.data.schema import Example
from taco.llm import build_llm
from taco.llm.base import LLM
from taco.tasks.registry import TaskSpec, get_task

log = logging.getLogger(__name__)


class TeacherError(RuntimeError):
    """The teacher stage cannot produce trustworthy outputs (too many failed calls)."""


def read_examples(path: Path) -> list[Example]:
    """Example rows of a prepared split; a clear error when the file is missing or malformed."""
    if not path.is_file():
        raise FileNotFoundError(f"prepared split not found: {path} (run `taco prepare` first)")
    return [Example.from_dict(row, where=f"{path}:{n}") for n, row in read_jsonl(path)]


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
) -> dict[str, Any]:
    """Run the stage for ``base.task`` (or ``task_name``); returns the meta record it writes."""
    from tqdm.auto import tqdm

    task_name = task_name or params.base.task
    task = get_task(task_name, params)
    splits = tuple(splits or params.teacher.splits)
    data_dir = Path(params.base.data_dir)
    src = data_dir / "prepared" / task_name
    dst = data_dir / "teacher" / task_name
    examples = {s: read_examples(src / f"{s}.jsonl")[:limit] for s in splits}
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
            write_atomic(dst / f"{split}.jsonl", dump_jsonl(rows_out))
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
    write_atomic(dst / "meta.json", json.dumps(meta, indent=2, ensure_ascii=False) + "\n")
    log.info("teacher: wrote %s in %.1f s (%s)", dst, meta["seconds"], meta["metrics"])
    return meta
