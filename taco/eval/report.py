"""Reports for people: the evaluation's comparison table and rate–quality plot, and
``taco report`` — one self-contained HTML page (images embedded) and a Markdown twin.

The page holds the data version (DVC hashes from dvc.lock), the training curve, the
rate–quality plot, the comparison table with confidence intervals, the gate decision and its
reasons, the recommended rate, and a few example compressions side by side (original /
trained / truncation, kept words highlighted). Plots use matplotlib's Agg backend.
"""

from __future__ import annotations

import base64
import datetime
import html
import json
import logging
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from taco.config import Params
from taco.data.files import DataFileError, read_json, read_jsonl, write_atomic
from taco.eval import keys
from taco.eval.gate import TASK_METRICS, gated_metric
from taco.layout import RATE_PLOT, REPORT_HTML, REPORT_MD, RUN_RECORD, TRAIN_PLOT, Layout

log = logging.getLogger(__name__)

LABELS = {
    "teacher_bleu": "teacher BLEU",
    "teacher_rougeL": "teacher ROUGE-L",
    "teacher_loglik": "teacher log-lik",
    "achieved_rate": "achieved rate",
    "latency_ms": "latency ms",
}


def _fmt(x: Any, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    return f"{x:.{digits}f}"


def _label(metric: str) -> str:
    return LABELS.get(metric, metric)


# ------------------------------------------------------------------ table (Markdown)


#: how a metric of metrics.json is named in a table
METRIC_NAMES = {"teacher_bleu": "teacher BLEU", "teacher_loglik": "teacher log-lik"}


def table_rows(
    metrics: Mapping[str, Any], task: str, rate: float, metric: str
) -> tuple[list[str], list[list[str]]]:
    """Header and cells of one rate's comparison: per compressor the gated ``metric`` and
    trained − it [CI], then the same for a second view (teacher BLEU; the task's own metric
    against gold when ``metric`` is a teacher metric), teacher log-lik (unless gated),
    achieved rate and latency (best first by ``metric``)."""

    def score(c: str) -> float:
        v = keys.value(metrics, keys.key(task, rate, c, metric))
        return v if math.isfinite(v) else -math.inf

    second = TASK_METRICS.get(task, "bleu") if metric.startswith("teacher_") else "teacher_bleu"
    plain = [m for m in ("teacher_loglik",) if m != metric]
    compressors = sorted(keys.compressors_of(metrics, task, rate), key=score, reverse=True)
    header = ["compressor"]
    for m in (metric, second):
        header += [METRIC_NAMES.get(m, m), "trained − it [CI]"]
    header += [*(METRIC_NAMES.get(m, m) for m in plain), "achieved rate", "latency ms"]
    cells = []
    for c in compressors:
        row = [c]
        for m in (metric, second):
            row.append(_fmt(metrics.get(keys.key(task, rate, c, m))))
            delta = metrics.get(keys.ci_key(task, rate, c, m, "delta"))
            if delta is None:
                row.append("")
            else:
                low = metrics.get(keys.ci_key(task, rate, c, m, "ci_low"))
                high = metrics.get(keys.ci_key(task, rate, c, m, "ci_high"))
                row.append(f"{delta:+.3f} [{low:+.3f}, {high:+.3f}]")
        row += [
            *(_fmt(metrics.get(keys.key(task, rate, c, m))) for m in plain),
            _fmt(metrics.get(keys.key(task, rate, c, "achieved_rate"))),
            _fmt(metrics.get(keys.key(task, rate, c, "latency_ms")), 1),
        ]
        cells.append(row)
    return header, cells


def markdown_table(header: Sequence[str], cells: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in cells]
    return "\n".join(lines)


def comparison_table(
    metrics: Mapping[str, Any], task: str, metric: str, confidence: float = 0.95
) -> str:
    """Every rate's comparison as Markdown tables (CIs: paired bootstrap, ``confidence``)."""
    parts = []
    for rate in keys.rates_of(metrics, task):
        n = metrics.get(keys.count_key(task, rate, "rows"))
        bad = metrics.get(keys.count_key(task, rate, "unscorable"))
        parts.append(
            f"**rate {rate:g}** ({n} rows, {bad} unscorable; CIs: paired bootstrap "
            f"{confidence:.0%})\n\n" + markdown_table(*table_rows(metrics, task, rate, metric))
        )
    return "\n\n".join(parts)


def recommended_text(metrics: Mapping[str, Any], task: str) -> str:
    rec = metrics.get(keys.recommended_key(task))
    if rec is None:
        return (
            "no evaluated rate keeps the trained compressor within gate.max_quality_loss of "
            "the uncompressed prompt (lower CI bound): compress less, or evaluate more rates "
            "(evaluate.curve)"
        )
    return f"{rec:g} (the smallest rate within gate.max_quality_loss of the uncompressed prompt)"


def eval_markdown(
    metrics: Mapping[str, Any], task: str, metric: str, confidence: float, rows: int
) -> str:
    """report.md of the evaluate stage: the tables, the recommended rate, the plot."""
    return (
        f"# Evaluation: {task}\n\n{rows} test rows; every compressor keeps at most "
        "floor(rate × context tokens) of the target LLM's tokens.\n\n"
        f"Recommended rate: {recommended_text(metrics, task)}.\n\n"
        f"{comparison_table(metrics, task, metric, confidence)}\n\n"
        f"![rate-quality]({RATE_PLOT})\n"
    )


# ------------------------------------------------------------------------------ plots


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> None:
    """Save a figure as PNG atomically (temp file, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    os.replace(tmp, path)


def rate_quality_plot(metrics: Mapping[str, Any], task: str, metric: str, path: Path) -> Path:
    """Score vs rate for every compressor (left: ``metric``; right: teacher BLEU); the
    uncompressed prompt as a dashed line."""
    plt = _pyplot()
    rates = keys.rates_of(metrics, task)
    names: dict[str, None] = {}
    for r in rates:
        names.update(dict.fromkeys(keys.compressors_of(metrics, task, r)))
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, m in zip(axes, (metric, "teacher_bleu"), strict=True):
        for c in names:
            ys = [keys.value(metrics, keys.key(task, r, c, m)) for r in rates]
            if c == "uncompressed":
                ax.axhline(ys[0], color="black", linestyle="--", label=c)
            else:
                style = {"linewidth": 2.5} if c == "trained" else {"alpha": 0.8}
                ax.plot(rates, ys, marker="o", label=c, **style)
        ax.set_xlabel("rate (share of LLM tokens kept)")
        ax.set_ylabel(_label(m))
        ax.set_title(f"{task}: {_label(m)}")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    _save(fig, path)
    plt.close(fig)
    return path


def write_plot_data(metrics: Mapping[str, Any], task: str, metric: str, folder: Path) -> None:
    """``dvc plots`` data: ``<compressor>.tsv`` with rate, score (``metric``), teacher_bleu."""
    rates = keys.rates_of(metrics, task)
    names: dict[str, None] = {}
    for r in rates:
        names.update(dict.fromkeys(keys.compressors_of(metrics, task, r)))
    for c in names:
        lines = ["rate\tscore\tteacher_bleu"]
        for r in rates:
            score = keys.value(metrics, keys.key(task, r, c, metric))
            fid = keys.value(metrics, keys.key(task, r, c, "teacher_bleu"))
            lines.append(f"{r:g}\t{score:.6f}\t{fid:.6f}")
        write_atomic(folder / f"{c}.tsv", "\n".join(lines) + "\n")


def train_curve_plot(train_reports: Path, path: Path) -> Path | None:
    """reward/mean (and reward/val) per step from DVCLive's TSVs; None without them."""
    series = {}
    for name in ("mean", "val"):
        tsv = train_reports / "plots" / "metrics" / "reward" / f"{name}.tsv"
        if tsv.is_file():
            lines = tsv.read_text(encoding="utf-8").splitlines()
            if len(lines) > 1:
                head = lines[0].split("\t")
                i, j = head.index("step"), head.index(name)
                pts = [ln.split("\t") for ln in lines[1:] if ln.strip()]
                series[f"reward/{name}"] = ([int(p[i]) for p in pts], [float(p[j]) for p in pts])
    if not series:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.5))
    for label, (xs, ys) in series.items():
        ax.plot(xs, ys, marker="." if label.endswith("val") else None, label=label)
    ax.set_xlabel("step")
    ax.set_ylabel("reward")
    ax.set_title("training curve")
    ax.grid(alpha=0.3)
    ax.legend()
    _save(fig, path)
    plt.close(fig)
    return path


# --------------------------------------------------------------------------- examples


def highlight(text: str, spans: Sequence[Sequence[int]]) -> str:
    """HTML of ``text`` with the kept character ``spans`` in <mark> and the rest dimmed."""
    out, pos = [], 0
    for s, e in sorted(spans):
        if s > pos:
            out.append(f'<span class="drop">{html.escape(text[pos:s])}</span>')
        out.append(f"<mark>{html.escape(text[s:e])}</mark>")
        pos = e
    if pos < len(text):
        out.append(f'<span class="drop">{html.escape(text[pos:])}</span>')
    return "".join(out)


def examples(
    rows_path: Path, rate: float, n: int, compressors: Sequence[str] = ("trained", "truncate")
) -> list[dict[str, Any]]:
    """The first ``n`` test examples at ``rate``: per compressor its kept spans, compressed
    text and LLM answer, plus the uncompressed context and answer."""
    found: dict[str, dict[str, Any]] = {}
    for _, row in read_jsonl(rows_path):
        if row["rate"] != rate or row["compressor"] not in (*compressors, "uncompressed"):
            continue
        ex = found.setdefault(row["id"], {"id": row["id"]})
        ex[row["compressor"]] = row
    full = [ex for ex in found.values() if all(c in ex for c in (*compressors, "uncompressed"))]
    return full[:n]


# ------------------------------------------------------------------------------ report


def _img(path: Path | None) -> str:
    if path is None or not path.is_file():
        return "<p><em>not available</em></p>"
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}">'


def _html_table(header: Sequence[str], cells: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in cells
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


_CSS = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:3px 8px;
font-size:90%}th{background:#f3f3f3}img{max-width:100%}mark{background:#c8f7c5}
.drop{color:#aaa;text-decoration:line-through}.pass{color:#1a7f37}.fail{color:#c62828}
.ex{display:grid;grid-template-columns:1fr 1fr 1fr;gap:1em}.ex pre{white-space:pre-wrap;
font-size:80%;background:#fafafa;padding:.5em;border:1px solid #eee}
"""


def render(params: Params, root: Path = Path(".")) -> dict[str, Path]:
    """Write ``<data_dir>/reports/run/report.html`` (self-contained) and ``report.md`` (with
    its images beside it) from the evaluation, the gate and the training run."""
    layout = Layout.of(params, root)
    task = params.base.task
    if not layout.eval_metrics.is_file():
        raise DataFileError(
            f"evaluation metrics not found: {layout.eval_metrics} (run `taco evaluate`)"
        )
    metrics = read_json(layout.eval_metrics)
    keys.check_task(metrics, task, str(layout.eval_metrics))
    metric = gated_metric(task, params.gate, params.reward.name)
    out = layout.run_report_dir
    out.mkdir(parents=True, exist_ok=True)
    gate = read_json(layout.gate_report) if layout.gate_report.is_file() else None
    run_record_path = layout.trained_model / RUN_RECORD
    run_record = json.loads(run_record_path.read_text()) if run_record_path.is_file() else {}
    from taco.rl.checkpoint import data_versions

    prefix = f"{Path(params.base.data_dir).as_posix()}/"
    versions = {k: v for k, v in data_versions(root).items() if k.startswith(prefix)}
    rate_png = rate_quality_plot(metrics, task, metric, out / RATE_PLOT)
    train_png = train_curve_plot(layout.train_reports, out / TRAIN_PLOT)
    rates = keys.rates_of(metrics, task)
    shown_rate = min(rates) if rates else None
    exs = (
        examples(layout.eval_rows, shown_rate, params.evaluate.examples)
        if shown_rate is not None and layout.eval_rows.is_file()
        else []
    )
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    md: list[str] = [f"# taco run report: {task}\n", f"Generated {when}.\n", "## Data version\n"]
    h: list[str] = [f"<h1>taco run report: {html.escape(task)}</h1><p>Generated {when}.</p>"]
    version_rows = [[p, v] for p, v in versions.items()] or [
        ["dvc.lock", f"no stage output under {prefix} (stages run outside `dvc repro`)"]
    ]
    version_rows.append(["git commit", str(run_record.get("git_commit"))])
    md.append(markdown_table(["output", "DVC hash"], version_rows) + "\n")
    h.append("<h2>Data version</h2>" + _html_table(["output", "DVC hash"], version_rows))
    # gate
    md.append("## Gate decision\n")
    h.append("<h2>Gate decision</h2>")
    if gate is None:
        md.append("not run (`taco gate`)\n")
        h.append("<p>not run (<code>taco gate</code>)</p>")
    else:
        verdict = "PASSED" if gate["passed"] else "FAILED"
        md.append(f"**{verdict}**\n")
        md += [f"- {r}" for r in gate["reasons"]]
        cls = "pass" if gate["passed"] else "fail"
        h.append(f'<p class="{cls}"><strong>{verdict}</strong></p>')
        if gate["reasons"]:
            h.append(
                "<ul>" + "".join(f"<li>{html.escape(r)}</li>" for r in gate["reasons"]) + "</ul>"
            )
        check_rows = [
            [c["name"], "yes" if c["passed"] else "no", _fmt(c["value"], 4), f"{c['threshold']:g}"]
            for c in gate["checks"]
        ]
        head = ["check", "passed", "value", "threshold"]
        md.append("\n" + markdown_table(head, check_rows) + "\n")
        h.append(_html_table(head, check_rows))
    rec = recommended_text(metrics, task)
    md.append(f"## Recommended rate\n\n{rec}.\n")
    h.append(f"<h2>Recommended rate</h2><p>{html.escape(rec)}.</p>")
    # comparison
    conf = params.evaluate.confidence
    md.append("## Comparison at equal budget\n\n" + comparison_table(metrics, task, metric, conf))
    h.append("<h2>Comparison at equal budget</h2>")
    for rate in rates:
        n = metrics.get(keys.count_key(task, rate, "rows"))
        h.append(f"<h3>rate {rate:g} ({n} rows; CIs: paired bootstrap {conf:.0%})</h3>")
        h.append(_html_table(*table_rows(metrics, task, rate, metric)))
    md.append(f"\n## Rate–quality\n\n![rate-quality]({RATE_PLOT})\n")
    h.append("<h2>Rate–quality</h2>" + _img(rate_png))
    steps = run_record.get("steps")
    md.append(
        f"## Training curve\n\n{steps} steps.\n\n"
        + (f"![training]({TRAIN_PLOT})\n" if train_png else "no DVCLive history\n")
    )
    h.append(f"<h2>Training curve</h2><p>{steps} steps.</p>" + _img(train_png))
    # examples
    md.append(f"## Examples at rate {shown_rate:g}\n" if exs else "## Examples\n\nnone\n")
    h.append(f"<h2>Examples at rate {shown_rate:g}</h2>" if exs else "<h2>Examples</h2><p>none</p>")
    for ex in exs:
        orig = ex["uncompressed"]["compressed"]
        md.append(f"### {ex['id']}\n")
        h.append(f"<h3>{html.escape(ex['id'])}</h3><div class='ex'>")
        answer = html.escape(ex["uncompressed"]["output"] or "")
        h.append(
            f"<div><h4>original</h4><pre>{html.escape(orig)}</pre><p>answer: {answer}</p></div>"
        )
        md.append(f"original:\n\n```\n{orig}\n```\n\nanswer: {ex['uncompressed']['output']}\n")
        for c in ("trained", "truncate"):
            row = ex[c]
            h.append(
                f"<div><h4>{c} ({row['compressed_tokens']}/{row['origin_tokens']} tokens)</h4>"
                f"<pre>{highlight(orig, row['kept_spans'])}</pre>"
                f"<p>answer: {html.escape(row['output'] or '')}</p></div>"
            )
            md.append(f"{c}:\n\n```\n{row['compressed']}\n```\n\nanswer: {row['output']}\n")
        h.append("</div>")
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>taco report: "
        f"{html.escape(task)}</title><style>{_CSS}</style></head><body>{''.join(h)}</body></html>"
    )
    write_atomic(out / REPORT_HTML, page)
    write_atomic(out / REPORT_MD, "\n".join(md) + "\n")
    log.info("report: %s", out / REPORT_HTML)
    return {"html": out / REPORT_HTML, "markdown": out / REPORT_MD}
