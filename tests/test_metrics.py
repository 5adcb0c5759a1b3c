"""Metric values against published reference values (sacrebleu, rouge-score, SQuAD's script)."""

from __future__ import annotations

import pytest

from taco.tasks.metrics import (
    BertScorer,
    corpus_bleu,
    exact_match,
    get_metric,
    normalize_answer,
    rouge,
    sentence_bleu,
    squad_f1,
)

# sacrebleu's README example: BLEU = 48.53 82.4/50.0/45.5/37.5 (BP = 0.943 ...)
SYS = ["The dog bit the man.", "It wasn't surprising.", "The man had just bitten him."]
REFS_A = ["The dog bit the man.", "It was not unexpected.", "The man bit him first."]
REFS_B = ["The dog had bit the man.", "No one was surprised.", "The man had bitten the dog."]


def test_corpus_bleu_matches_sacrebleu_readme() -> None:
    per_sample = [[a, b] for a, b in zip(REFS_A, REFS_B, strict=True)]
    assert corpus_bleu(SYS, per_sample) == pytest.approx(0.4853, abs=5e-5)


def test_corpus_bleu_accepts_a_varying_number_of_references() -> None:
    assert corpus_bleu(["a b c d", "x y"], [["a b c d", "e"], ["x y"]]) == pytest.approx(1.0)


def test_sentence_bleu_is_smoothed_and_on_unit_scale() -> None:
    assert sentence_bleu("The dog bit the man.", ["The dog bit the man."]) == pytest.approx(1.0)
    assert sentence_bleu("cat", ["The dog bit the man."]) == 0.0
    assert sentence_bleu("", ["The dog bit the man."]) == 0.0
    # a two-word partial match has no 3-/4-gram match: unsmoothed BLEU would be exactly 0
    partial = sentence_bleu("dog man", ["The dog bit the man."])
    assert 0.0 < partial < 0.5
    # sacrebleu's own value for this pair (BLEU = 14.79, effective order, exp smoothing)
    multi = sentence_bleu(SYS[1], [REFS_A[1], REFS_B[1]])
    assert multi == pytest.approx(0.1479, abs=5e-5)


def test_rouge_matches_rouge_score_readme() -> None:
    # rouge-score README: score(target, prediction) → rouge1 F 0.7059, rougeL F 0.5882
    scores = rouge(
        "The quick brown dog jumps on the log.", ["The quick brown fox jumps over the lazy dog"]
    )
    assert scores["rouge1"] == pytest.approx(0.70588, abs=1e-5)
    assert scores["rougeL"] == pytest.approx(0.58824, abs=1e-5)
    assert 0.0 < scores["rouge2"] < scores["rouge1"]
    assert rouge("same words here", ["unrelated", "same words here"])["rougeL"] == 1.0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The Denver Broncos", "denver broncos"),
        ("  a  cat,  AN apple; the end! ", "cat apple end"),
        ("Theatre and another", "theatre and another"),  # only whole-word articles go
        ("$3.50 (approx.)", "350 approx"),
        ("", ""),
    ],
)
def test_squad_normalisation(text: str, expected: str) -> None:
    assert normalize_answer(text) == expected


def test_squad_exact_match_and_f1() -> None:
    assert exact_match("the Denver Broncos!", ["Denver Broncos"]) == 1.0
    assert exact_match("Denver", ["Denver Broncos", "Broncos"]) == 0.0
    # pred "denver broncos won" vs gold "denver broncos": P = 2/3, R = 1, F1 = 0.8
    assert squad_f1("Denver Broncos won", ["Denver Broncos"]) == pytest.approx(0.8)
    assert squad_f1("Broncos", ["Carolina Panthers", "the Broncos"]) == 1.0  # max over golds
    assert squad_f1("nothing shared", ["Denver Broncos"]) == 0.0
    assert squad_f1("the", ["a"]) == 1.0  # both empty after normalisation (SQuAD v2 rule)
    assert squad_f1("Broncos", ["the"]) == 0.0
    assert squad_f1("x", []) == 0.0


def test_metric_registry() -> None:
    assert get_metric("f1") is squad_f1
    assert get_metric("rougeL")("a b", ["a b"]) == 1.0
    with pytest.raises(ValueError, match="unknown metric"):
        get_metric("meteor")


@pytest.mark.slow
def test_minilm_bertscore_ranks_paraphrases_above_unrelated_text() -> None:
    scorer = BertScorer(batch_size=4)
    same, para, other, empty = scorer.score(
        ["adds two numbers", "a function that adds two numbers", "the weather is nice", ""],
        [["adds two numbers"]] * 4,
    )
    assert same == pytest.approx(1.0, abs=1e-4)
    assert other < para < same
    assert empty == 0.0
