"""taco.reproduce.compare: which scores are compared and what counts as a match."""

from __future__ import annotations

import math

from taco.reproduce import compare

RECORDED = {
    "code/rate_0.33/trained/bleu": 0.20,
    "code/rate_0.33/trained/teacher_rougeL": 0.50,
    "code/rate_0.33/trained/latency_ms_per_1k_tokens": 12.0,  # a timing: never compared
    "code/rate_0.33/truncate/bleu": 0.10,  # another compressor: not this model's score
    "code/rate_0.33/trained_vs_truncate/bleu/delta": 0.10,
    "code/rate_0.5/trained/bleu": None,  # unscorable on both sides: matches
    "code/recommended_rate": 0.5,
}


def test_the_same_scores_match() -> None:
    reproduced = {**RECORDED, "code/rate_0.33/trained/latency_ms_per_1k_tokens": 99.0}
    out = compare(RECORDED, reproduced, tolerance=0.0)
    assert out["match"] and out["compared"] == 3 and out["mismatches"] == []
    assert out["max_abs_diff"] == 0.0


def test_a_score_beyond_the_tolerance_is_named() -> None:
    reproduced = {**RECORDED, "code/rate_0.33/trained/bleu": 0.215}
    assert compare(RECORDED, reproduced, tolerance=0.02)["match"]
    out = compare(RECORDED, reproduced, tolerance=0.01)
    assert not out["match"]
    assert [m["key"] for m in out["mismatches"]] == ["code/rate_0.33/trained/bleu"]
    assert math.isclose(out["mismatches"][0]["diff"], 0.015)


def test_a_missing_score_or_nothing_to_compare_is_no_match() -> None:
    reproduced = {k: v for k, v in RECORDED.items() if not k.endswith("teacher_rougeL")}
    out = compare(RECORDED, reproduced, tolerance=1.0)
    assert not out["match"] and out["mismatches"][0]["reproduced"] is None
    assert not compare({"code/recommended_rate": 0.5}, {}, tolerance=1.0)["match"]
