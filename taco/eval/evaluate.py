"""The `evaluate` stage: the trained compressor against every baseline at equal token budget.

On the first ``evaluate.max_rows`` test rows with a teacher output, every compressor of
taco/eval/baselines.py compresses each context at every rate (``evaluate.rates``, plus 0.2,
0.25 and 0.75 with ``evaluate.curve``) to at most ``floor(rate * L_o)`` target-LLM tokens; the
target LLM answers on the compressed prompt (through the LLM cache: unchanged baselines cost
nothing on a rerun; the uncompressed prompt's answers are the teacher outputs). Each answer is
scored against the gold references with the task's metrics (QA: EM/F1; summarisation and
code: BLEU, ROUGE-1/2/L) and against the teacher output (BLEU, ROUGE-L, and the LLM's mean
log-probability of the teacher output given the compressed prompt). Achieved rate (LLM
tokens) and compression latency are recorded per example.

Rows where any compressor's LLM call failed at a rate are unscorable: excluded from every
compressor at that rate (pairwise), never scored 0. Paired bootstrap CIs of ``trained`` minus
every other compressor share one resample draw per rate. The operating point
(``recommended_rate``) is the smallest rate where trained stays within
``gate.max_quality_loss`` of the uncompressed prompt, the CI's lower bound included.

Writes ``<data_dir>/reports/eval/``: ``metrics.json`` (flat keys, taco/eval/keys.py; DVC
metrics), ``rows.jsonl`` (one line per example × rate × compressor), ``report.md``,
``rate_quality.png`` and ``plots/<compressor>.tsv`` (``dvc plots`` data).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from taco.compress.compressor import Compressor
from taco.compress.encoder import ModelNotFoundError
from taco.config import Params
from taco.data.files import dump_jsonl, read_examples, write_atomic
from taco.errors import StageFailed, UserError
from taco.eval import keys, stats
from taco.eval.baselines import (
    EvalCompressor,
    LLMLinguaCompressor,
    ModelCompressor,
    QuestionOverlap,
    RandomDrop,
    SelectiveContext,
    Truncate,
    Uncompressed,
)
from taco.eval.gate import gated_metric, resolve_champion
from taco.layout import RUN_RECORD, Layout
from taco.llm.base import LLMError, LLMTokenCounter
from taco.rl.rows import TrainError, TrainRow, load_rows
from taco.tasks.metrics import exact_match, rouge, sentence_bleu, squad_f1
from taco.tasks.registry import TaskSpec, get_task

log = logging.getLogger(__name__)

TEACHER_METRICS = ("teacher_bleu", "teacher_rougeL", "teacher_loglik")
CHUNK = 16  # rows per LLM call (progress and cache granularity)


class EvalError(UserError, ValueError):
    """The evaluation cannot run as configured (the message names the file or field)."""


# ------------------------------------------------------------------------------- scoring


def gold_metrics(task: TaskSpec) -> tuple[str, ...]:
    """Metrics against the gold references: EM/F1 for F1/EM tasks, BLEU and ROUGE-1/2/L for
    BLEU/ROUGE tasks, else the task's own metric."""
    if task.metric in ("f1", "em"):
        return ("em", "f1")
    if task.metric in ("bleu", "rouge1", "rouge2", "rougeL"):
        return ("bleu", "rouge1", "rouge2", "rougeL")
    return (task.metric,)


def score_output(
    task: TaskSpec, output: str, references: Sequence[str], teacher: str
) -> dict[str, float]:
    """Gold metrics (``gold_metrics``) and teacher fidelity (BLEU, ROUGE-L) of one answer,
    both sides post-processed as the task does (code: the first line)."""
    hyp = task.postprocess(output)
    refs = list(references)
    out: dict[str, float] = {}
    for name in gold_metrics(task):
        if name == "bleu":
            out[name] = sentence_bleu(hyp, refs)
        elif name.startswith("rouge"):
            out[name] = rouge(hyp, refs)[name] if refs else 0.0
        elif name == "f1":
            out[name] = squad_f1(hyp, refs)
        elif name == "em":
            out[name] = exact_match(hyp, refs)
        else:
            out[name] = task.score(output, refs)
    ref = [task.postprocess(teacher)]
    out["teacher_bleu"] = sentence_bleu(hyp, ref)
    out["teacher_rougeL"] = rouge(hyp, ref)["rougeL"]
    return out


# ------------------------------------------------------------------------------- inputs


def test_rows(params: Params, root: Path) -> list[TrainRow]:
    """The first ``evaluate.max_rows`` test rows joined with their teacher outputs."""
    layout = Layout.of(params, root)
    split = layout.split("test")
    if not read_examples(split):
        raise EvalError(f"the test split is empty: {split} (check prepare.test_fraction)")
    try:
        rows = load_rows(params, root, "test")
    except TrainError:
        raise EvalError(
            f"no test row has a teacher output: {layout.teacher_split('test')} (run `taco teacher`)"
        ) from None
    return rows[: params.evaluate.max_rows]


def load_compressor(
    path: str | Path | None, role: str, counter: Any, params: Params, **kw: Any
) -> Compressor:
    """A taco compressor for ``role`` (trained, start, production), its budget in the
    target LLM's tokens; a folder that does not load is one ``EvalError`` naming it."""
    if path is not None and not (Path(path) / "config.json").is_file():
        raise EvalError(f"{role} model not found: {path} has no config.json")
    try:
        return Compressor.from_pretrained(
            path,
            device=params.train.device,
            token_counter=counter,
            max_seq_len=params.train.max_seq_len,
            **kw,
        )
    except ModelNotFoundError as exc:  # a folder whose config does not parse
        raise EvalError(f"{role} model {path} does not load: {exc}") from None
    except UserError:
        raise
    except Exception as exc:  # a broken folder: any library error, one line naming it
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise EvalError(f"{role} model {path} does not load: {first}") from None


def start_model(layout: Layout, record: Mapping[str, Any]) -> tuple[bool, str | None, str]:
    """Where training started, from the trained model's run record: ``(found, folder or
    None for the embedded encoder, reason when not found)``."""
    start = record.get("start_model")
    if not isinstance(start, str):
        return False, None, f"{RUN_RECORD} names no start model"
    if start.startswith("embedded:"):
        return True, None, ""
    path = Path(start) if Path(start).is_absolute() else layout.root / start
    if (path / "config.json").is_file():
        return True, str(path), ""
    warm = layout.warmstart_model  # the same project checked out elsewhere
    if path.name == warm.name and (warm / "config.json").is_file():
        return True, str(warm), ""
    return False, None, f"the start model {start} is not a folder on this machine"


def build_compressors(
    params: Params, root: Path, llm: Any, examples_have_questions: bool
) -> dict[str, EvalCompressor]:
    """Every compressor to evaluate, ``trained`` first; baselines that cannot run here are
    skipped with a logged reason."""
    ev = params.evaluate
    layout = Layout.of(params, root)
    counter = LLMTokenCounter(llm)
    model_dir = layout.trained_model
    if not (model_dir / "config.json").is_file():
        raise EvalError(f"trained model not found: {model_dir} (run `taco train`)")
    trained = load_compressor(model_dir, "trained", counter, params)
    opts = {"force_tokens": params.train.force_tokens, "keep_digits": params.train.keep_digits}
    out: dict[str, EvalCompressor] = {"trained": ModelCompressor("trained", trained, **opts)}

    def skip(name: str, why: str) -> None:
        log.info("evaluate: baseline %s skipped: %s", name, why)

    for name in ev.baselines:
        if name == "uncompressed":
            out[name] = Uncompressed(counter)
        elif name == "random":
            out[name] = RandomDrop(trained, seed=params.base.seed, **opts)
        elif name == "truncate":
            out[name] = Truncate(trained, **opts)
        elif name == "question_overlap":
            if not examples_have_questions:
                skip(name, "the test rows have no questions")
                continue
            out[name] = QuestionOverlap(trained, **opts)
        elif name == "selective_context":
            out[name] = SelectiveContext(
                trained,
                _self_information_lm(params, llm),
                store=getattr(llm, "cache", None),
                **opts,
            )
        elif name == "start":
            record_path = model_dir / RUN_RECORD
            record = json.loads(record_path.read_text()) if record_path.is_file() else {}
            found, path, why = start_model(layout, record)
            if not found:
                skip(name, why)
                continue
            cfg = record.get("config", {}).get("train", {})
            comp = load_compressor(
                path, "start", counter, params, unit=cfg.get("unit"),
                position_prior=cfg.get("position_prior"),
            )  # fmt: skip
            out[name] = ModelCompressor("start", comp, **opts)
        elif name == "production":
            champion = resolve_champion(params, root)
            if champion is None:
                skip(name, "no champion (gate.champion: null)")
                continue
            out[name] = ModelCompressor(
                "production", load_compressor(champion, "production", counter, params), **opts
            )
        elif name == "llmlingua":
            if ev.llmlingua_python is None:
                skip(name, "evaluate.llmlingua_python is null (see `make llmlingua-venv`)")
                continue
            from taco.llm.cache import cache_dir

            python = Path(ev.llmlingua_python)
            out[name] = LLMLinguaCompressor(
                python if python.is_absolute() else root / python,
                model_dir,
                counter,
                tiktoken_dir=cache_dir() / "tiktoken",
                force_tokens=params.train.force_tokens,
            )
    return out


def _self_information_lm(params: Params, llm: Any) -> Any:
    """The causal LM of ``selective_context``: the target LLM itself when it is local and
    ``evaluate.selective_context_model`` is null, else that model (default: embedded)."""
    from taco.llm.local import LocalLLM

    inner = getattr(llm, "inner", llm)
    if params.evaluate.selective_context_model is None and isinstance(inner, LocalLLM):
        return inner
    return LocalLLM.from_source(
        params.evaluate.selective_context_model, device=params.llm.device, dtype=params.llm.dtype
    )


# ------------------------------------------------------------------------------ the run


@dataclasses.dataclass
class Record:
    """One example × rate × compressor (a line of rows.jsonl)."""

    id: str
    rate: float
    compressor: str
    origin_tokens: int
    budget: int
    compressed_tokens: int
    latency_ms: float
    compressed: str
    kept_spans: list[list[int]]
    output: str | None
    scores: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["achieved_rate"] = (
            self.compressed_tokens / self.origin_tokens if self.origin_tokens else 1.0
        )
        out["scorable"] = self.output is not None
        return out


def compress_and_answer(
    comp: EvalCompressor,
    rows: Sequence[TrainRow],
    rates: Sequence[float],
    *,
    llm: Any,
    task: TaskSpec,
    max_new_tokens: int,
    loglik: bool,
) -> list[Record]:
    """Compress ``rows`` at every rate, ask the LLM, score: one ``Record`` each."""
    from taco.compress.selection import token_budget

    pending = []
    for r in rows:
        scored = comp.score(r.example.context, r.example.question)
        for rate in rates:
            res, seconds = comp.select(scored, rate)
            pending.append((r, rate, res, (scored.seconds + seconds) * 1000.0))
    prompts = [task.prompt(res.compressed_prompt, r.example.question) for r, _, res, _ in pending]
    if isinstance(comp, Uncompressed):
        outputs: list[str | None] = [r.teacher for r, _, _, _ in pending]
    else:
        outputs = llm.generate(prompts, max_new_tokens)
    lls: list[float | None] = [None] * len(pending)
    if loglik:
        lls = list(llm.loglik(prompts, [r.teacher for r, _, _, _ in pending]))
    records = []
    for (r, rate, res, ms), out, ll in zip(pending, outputs, lls, strict=True):
        scores = {}
        if out is not None:
            scores = score_output(task, out, r.example.references, r.teacher)
            if ll is not None:
                scores["teacher_loglik"] = float(ll)
        records.append(
            Record(
                id=r.example.id,
                rate=rate,
                compressor=comp.name,
                origin_tokens=res.origin_tokens,
                budget=token_budget(res.origin_tokens, rate, None),
                compressed_tokens=res.compressed_tokens,
                latency_ms=ms,
                compressed=res.compressed_prompt,
                kept_spans=[list(s) for s in res.kept_spans],
                output=out,
                scores=scores,
            )
        )
    return records


def _supports_loglik(llm: Any, rows: Sequence[TrainRow], task: TaskSpec) -> bool:
    """Whether the LLM scores log-likelihoods (an endpoint that only generates does not)."""
    try:
        llm.loglik(
            [task.prompt(rows[0].example.context, rows[0].example.question)], [rows[0].teacher]
        )
    except LLMError as exc:
        log.info("evaluate: no teacher_loglik (%s)", str(exc).splitlines()[0])
        return False
    return True


def summarize(
    records: Sequence[Record],
    *,
    task_name: str,
    rates: Sequence[float],
    compressors: Sequence[str],
    quality: Sequence[str],
    gated: str,
    max_quality_loss: float,
    samples: int,
    confidence: float,
    seed: int,
) -> tuple[dict[str, Any], dict[float, int]]:
    """Flat metrics (taco/eval/keys.py) and the unscorable row count per rate."""
    by = {(r.rate, r.compressor, r.id): r for r in records}
    ids = list(dict.fromkeys(r.id for r in records))
    metrics: dict[str, Any] = {}
    unscorable: dict[float, int] = {}
    points = []
    for rate in rates:
        valid = [i for i in ids if all(by[(rate, c, i)].output is not None for c in compressors)]
        unscorable[rate] = len(ids) - len(valid)
        metrics[keys.count_key(task_name, rate, "rows")] = len(valid)
        metrics[keys.count_key(task_name, rate, "unscorable")] = unscorable[rate]
        idx = stats.bootstrap_indices(len(valid), samples, seed)
        values: dict[str, dict[str, np.ndarray]] = {}
        for c in compressors:
            recs = [by[(rate, c, i)] for i in valid]
            values[c] = {
                m: np.array([rec.scores.get(m, math.nan) for rec in recs], dtype=np.float64)
                for m in quality
            }
            for m in quality:
                metrics[keys.key(task_name, rate, c, m)] = _mean(values[c][m])
            origin = np.array([rec.origin_tokens for rec in recs], dtype=np.float64)
            kept = np.array([rec.compressed_tokens for rec in recs], dtype=np.float64)
            ms = np.array([rec.latency_ms for rec in recs], dtype=np.float64)
            metrics[keys.key(task_name, rate, c, "achieved_rate")] = _mean(
                kept / np.maximum(origin, 1)
            )
            metrics[keys.key(task_name, rate, c, "over_budget")] = int(
                sum(rec.compressed_tokens > rec.budget for rec in recs if c != "uncompressed")
            )
            metrics[keys.key(task_name, rate, c, "latency_ms")] = _mean(ms)
            metrics[keys.key(task_name, rate, c, "latency_ms_per_1k_tokens")] = (
                float(ms.sum() / max(origin.sum(), 1.0) * 1000.0) if recs else None
            )
        if "trained" in values:
            for c in compressors:
                if c == "trained":
                    continue
                for m in quality:
                    diff = values["trained"][m] - values[c][m]
                    if not np.isfinite(diff).all() or diff.size == 0:
                        continue
                    low, high = stats.paired_ci(diff, idx, confidence)
                    for part, v in zip(keys.CI_PARTS, (float(diff.mean()), low, high), strict=True):
                        metrics[keys.ci_key(task_name, rate, c, m, part)] = round(v, 6)
        if "uncompressed" in values and gated in quality:
            points.append(
                (
                    rate,
                    metrics[keys.key(task_name, rate, "uncompressed", gated)] or 0.0,
                    metrics.get(
                        keys.ci_key(task_name, rate, "uncompressed", gated, "ci_low"), math.nan
                    ),
                )
            )
    metrics[keys.recommended_key(task_name)] = stats.recommended_rate(points, max_quality_loss)
    return metrics, unscorable


def _mean(x: np.ndarray) -> float | None:
    x = x[np.isfinite(x)]
    return round(float(x.mean()), 6) if x.size else None


def evaluate(
    params: Params, root: Path = Path("."), *, llm: Any = None, progress: bool = True
) -> dict[str, Any]:
    """Run the evaluation and write its outputs; returns the summary (see ``run``)."""
    from tqdm.auto import tqdm

    from taco.eval import report
    from taco.llm import build_llm

    ev = params.evaluate
    started = time.perf_counter()
    layout = Layout.of(params, root)
    task = get_task(params.base.task, params)
    rows = test_rows(params, root)
    llm = llm or build_llm(params.llm)
    compressors = build_compressors(params, root, llm, any(r.example.question for r in rows))
    rates = ev.all_rates()
    loglik = _supports_loglik(llm, rows, task)
    quality = (*gold_metrics(task), *TEACHER_METRICS[: 3 if loglik else 2])
    gated = gated_metric(params.base.task, params.gate, params.reward.name)
    log.info(
        "evaluate: %d test rows x %d rates x %d compressors (%s)",
        len(rows), len(rates), len(compressors), ", ".join(compressors),
    )  # fmt: skip
    records: list[Record] = []
    spent: dict[str, float] = {}  # wall seconds per compressor: compression, LLM, scoring
    try:
        with tqdm(
            total=len(rows) * len(compressors), desc="evaluate", unit="ex", disable=not progress
        ) as bar:
            for comp in compressors.values():
                bar.set_postfix(compressor=comp.name)
                t0 = time.perf_counter()
                for start in range(0, len(rows), CHUNK):
                    chunk = rows[start : start + CHUNK]
                    records += compress_and_answer(
                        comp,
                        chunk,
                        rates,
                        llm=llm,
                        task=task,
                        max_new_tokens=params.llm.max_new_tokens,
                        loglik=loglik,
                    )
                    bar.update(len(chunk))
                spent[comp.name] = round(time.perf_counter() - t0, 2)
    finally:
        for comp in compressors.values():
            comp.close()
    metrics, unscorable = summarize(
        records,
        task_name=params.base.task,
        rates=rates,
        compressors=list(compressors),
        quality=quality,
        gated=gated,
        max_quality_loss=params.gate.max_quality_loss,
        samples=ev.bootstrap_samples,
        confidence=ev.confidence,
        seed=params.base.seed,
    )
    for rate, n in unscorable.items():
        if n > ev.max_unscorable_fraction * len(rows):
            raise StageFailed(
                f"evaluate: {n} of {len(rows)} test rows at rate {rate:g} lost an LLM answer "
                f"(> evaluate.max_unscorable_fraction={ev.max_unscorable_fraction}); check the "
                "LLM endpoint and rerun (answers so far are cached)"
            )
        if n:
            log.warning(
                "evaluate: %d rows at rate %g are unscorable (excluded everywhere)", n, rate
            )
    write_atomic(layout.eval_metrics, json.dumps(metrics, indent=2) + "\n")
    write_atomic(layout.eval_rows, dump_jsonl(r.to_dict() for r in records))
    table = report.comparison_table(metrics, params.base.task, gated, ev.confidence)
    write_atomic(
        layout.eval_report,
        report.eval_markdown(metrics, params.base.task, gated, ev.confidence, len(rows)),
    )
    report.rate_quality_plot(metrics, params.base.task, gated, layout.eval_plot)
    report.write_plot_data(metrics, params.base.task, gated, layout.eval_plots_dir)
    seconds = round(time.perf_counter() - started, 2)
    log.info("evaluate: %s in %.1f s\n%s", layout.eval_dir, seconds, table)
    return {
        "rows": len(rows),
        "rates": list(rates),
        "compressors": list(compressors),
        "recommended_rate": metrics[keys.recommended_key(params.base.task)],
        "seconds": seconds,
        "seconds_by_compressor": spent,
        "llm": llm.metrics() if hasattr(llm, "metrics") else {},
    }


def run(params: Params, root: Path = Path("."), *, no_progress: bool = False) -> dict[str, Any]:
    """The ``evaluate`` stage; returns rows, rates, compressors, the recommended rate, the
    seconds taken (in all and per compressor) and the LLM's call and cache counters."""
    return evaluate(params, root, progress=not no_progress)
