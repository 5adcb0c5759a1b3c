"""Every path under ``base.data_dir`` and every fixed file name, declared once.

No other module, script or bench builds these paths: they ask a ``Layout``. dvc.yaml spells
the same paths with ``${base.data_dir}`` templating (a test holds the two together).

```
<data_dir>/
  raw/<task>/                 records.jsonl, snapshot.json          (ingest; DVC-tracked)
  prepared/<task>/            {train,val,test}.jsonl, stats.json     (prepare)
  teacher/<task>/             {split}.jsonl, meta.json               (teacher)
  models/warmstart/           a compressor + warmstart.json          (warmstart)
  models/taco/                the trained compressor + taco_run.json (train)
  checkpoints/train/          checkpoint.pt                          (train; git-ignored)
  reports/                    validation.json, warmstart.json, gate.json, package.json
  reports/train/              DVCLive metrics.json + plots/          (train)
  reports/eval/               metrics.json, rows.jsonl, report.md, rate_quality.png,
                              plots/<compressor>.tsv                 (evaluate)
  reports/run/                report.html, report.md + images       (`taco report`; git-ignored)
  reports/reproduce/          <model>.json                           (taco_reproduce)
  reproduce/<model>/          a scratch project                      (taco_reproduce; git-ignored)
```
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from taco.config import Params

# Fixed file names.
RAW_RECORDS = "records.jsonl"
RAW_SNAPSHOT = "snapshot.json"
STATS_FILE = "stats.json"
VALIDATION_FILE = "validation.json"
TEACHER_META = "meta.json"
WARMSTART_RECORD = "warmstart.json"
RUN_RECORD = "taco_run.json"
CHECKPOINT = "checkpoint.pt"
METRICS_FILE = "metrics.json"
GATE_FILE = "gate.json"
PACKAGE_FILE = "package.json"
EVAL_ROWS = "rows.jsonl"
REPORT_MD = "report.md"
REPORT_HTML = "report.html"
RATE_PLOT = "rate_quality.png"
TRAIN_PLOT = "train_curve.png"
PARAMS_FILE = "params.yaml"  # the project's (and a bento's) params file
BENTOFILE = "bentofile.yaml"  # the one BentoML build spec, at the repository root
BUDGET_TOKENIZER = "budget_tokenizer"  # in a packaged model: the target LLM's tokenizer


def cache_dir() -> Path:
    """taco's cache root (LLM answers, dequantised models, int8 ONNX graphs):
    ``$TACO_CACHE_DIR``, else ``$XDG_CACHE_HOME/taco`` or ``~/.cache/taco``."""
    env = os.environ.get("TACO_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "taco"


def hub_offline() -> bool:
    """Whether taco keeps off the Hugging Face Hub: yes unless ``HF_HUB_OFFLINE`` is set to
    a false value (``0``, ``false``, ``no``, ``off``) and ``TRANSFORMERS_OFFLINE`` is not set
    to a true one. Offline by construction: a hub id that is not downloaded fails at once
    instead of downloading, in the Python API as on the command line."""
    false, true = ("0", "false", "no", "off"), ("1", "true", "yes", "on")
    allowed = os.environ.get("HF_HUB_OFFLINE", "1").strip().lower() in false
    return not allowed or os.environ.get("TRANSFORMERS_OFFLINE", "").strip().lower() in true


@dataclasses.dataclass(frozen=True)
class Layout:
    """Paths of one project: ``root`` (the repository) / ``data_dir`` for ``task``.

    ``Layout.of(params, root)`` reads ``base.data_dir`` and ``base.task``; every attribute is
    a ``Path`` (nothing is created)."""

    root: Path
    data_dir: Path
    task: str

    @classmethod
    def of(cls, params: Params, root: Path | str = ".") -> Layout:
        """The layout of ``params`` under ``root``."""
        return cls(Path(root), Path(params.base.data_dir), params.base.task)

    @property
    def data(self) -> Path:
        return self.root / self.data_dir

    # -- ingest / prepare / validate
    @property
    def raw_dir(self) -> Path:
        return self.data / "raw" / self.task

    @property
    def raw_relpath(self) -> str:
        """``<data_dir>/raw/<task>`` relative to the root, as DVC names the output."""
        return f"{self.data_dir.as_posix()}/raw/{self.task}"

    @property
    def prepared_dir(self) -> Path:
        return self.data / "prepared" / self.task

    def split(self, name: str) -> Path:
        """``prepared/<task>/<name>.jsonl`` (train, val or test)."""
        return self.prepared_dir / f"{name}.jsonl"

    @property
    def reports_dir(self) -> Path:
        return self.data / "reports"

    @property
    def validation_report(self) -> Path:
        return self.reports_dir / VALIDATION_FILE

    # -- teacher
    @property
    def teacher_dir(self) -> Path:
        return self.data / "teacher" / self.task

    def teacher_split(self, name: str) -> Path:
        """``teacher/<task>/<name>.jsonl``: the target LLM's outputs on that split."""
        return self.teacher_dir / f"{name}.jsonl"

    # -- warmstart / train
    @property
    def warmstart_model(self) -> Path:
        return self.data / "models" / "warmstart"

    @property
    def warmstart_report(self) -> Path:
        return self.reports_dir / WARMSTART_RECORD

    @property
    def trained_model(self) -> Path:
        return self.data / "models" / "taco"

    @property
    def train_reports(self) -> Path:
        """DVCLive's folder: ``metrics.json`` and ``plots/metrics/<name>.tsv``."""
        return self.reports_dir / "train"

    @property
    def train_checkpoints(self) -> Path:
        return self.data / "checkpoints" / "train"

    # -- evaluate / gate / package
    @property
    def eval_dir(self) -> Path:
        return self.reports_dir / "eval"

    @property
    def eval_metrics(self) -> Path:
        """Flat metrics (taco/eval/keys.py), declared as DVC metrics."""
        return self.eval_dir / METRICS_FILE

    @property
    def eval_rows(self) -> Path:
        """One JSON line per (example, rate, compressor), for audit."""
        return self.eval_dir / EVAL_ROWS

    @property
    def eval_report(self) -> Path:
        return self.eval_dir / REPORT_MD

    @property
    def eval_plot(self) -> Path:
        """The rate-quality plot (PNG)."""
        return self.eval_dir / RATE_PLOT

    @property
    def eval_plots_dir(self) -> Path:
        """``dvc plots`` data: ``<compressor>.tsv`` with rate, score, teacher_bleu."""
        return self.eval_dir / "plots"

    @property
    def run_report_dir(self) -> Path:
        """`taco report`: report.html (self-contained), report.md and its images."""
        return self.reports_dir / "run"

    @property
    def gate_report(self) -> Path:
        return self.reports_dir / GATE_FILE

    @property
    def package_report(self) -> Path:
        return self.reports_dir / PACKAGE_FILE

    # -- taco_reproduce
    @property
    def reproduce_dir(self) -> Path:
        """Scratch projects of taco_reproduce, ``reproduce/<model>/`` (git-ignored)."""
        return self.data / "reproduce"

    def reproduce_report(self, name: str) -> Path:
        """``reports/reproduce/<name>.json``: recorded vs reproduced scores of a model."""
        return self.reports_dir / "reproduce" / f"{name}.json"
