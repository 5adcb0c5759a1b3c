"""`taco models`' table: the KEY METRICS cell stays readable."""

from __future__ import annotations

import datetime
from pathlib import Path

from taco.serving.registry import ModelRecord, format_table

METRICS = {
    f"code/rate_{r}/trained/{m}": v
    for r in ("0.33", "0.5")
    for m, v in (("achieved_rate", 0.3), ("bleu", 0.04), ("teacher_loglik", -1.1), ("rouge1", 0.2))
}


def record(**metadata: object) -> ModelRecord:
    created = datetime.datetime(2026, 12, 7, 22, 33)
    return ModelRecord("taco-code:abc", "code", "candidate", created, Path("."), metadata)


def test_the_table_shows_the_gated_score_and_the_achieved_rate_only() -> None:
    row = format_table([record(metrics=METRICS, gate_passed=True, gate_metric="teacher_loglik")])
    cell = row.splitlines()[1].split("passed  ")[1]
    assert cell == (
        "rate_0.33/achieved_rate=0.300 rate_0.33/teacher_loglik=-1.100 "
        "rate_0.5/achieved_rate=0.300 rate_0.5/teacher_loglik=-1.100"
    )
    older = format_table([record(metrics=METRICS, gate_passed=True)])  # packaged before
    assert "rate_0.5/rouge1=0.200" in older and "rate_0.5/bleu=0.040" in older
