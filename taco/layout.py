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
  reports/eval/               metrics.json, rows.jsonl, report.md, plots (evaluate)
  reports/reproduce/          <model>.json                           (taco_reproduce)
  reproduce/<model>/          a scratch project                      (taco_reproduce; git-ignored)
```
"""

from __future__ import annotations

import dataclasses
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
