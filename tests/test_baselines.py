"""taco.eval.baselines: every baseline meets the same budget in the target LLM's tokens on real
texts of all three tasks, is deterministic, and the trained path equals inference."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from taco.compress.compressor import Compressor
from taco.compress.selection import HFTokenCounter
from taco.eval import baselines as bl
from tests.helpers.paths import ROOT, shared_data
from tests.helpers.tiny_causal_lm import tiny_causal_lm_folder
from tests.helpers.training import tiny_encoder_folder

RATES = (0.1, 0.33, 0.5, 0.9)


def real_texts() -> list[tuple[str, str, str]]:
    """(task, context, question): 3 code functions, 3 SQuAD paragraphs with their questions,
    2 QMSum meeting segments of 400 words (as prepare cuts them)."""
    out = []
    for task, n in (("code", 3), ("qa", 3), ("summarization", 2)):
        with shared_data(task).open(encoding="utf-8") as fh:
            for line, _ in zip(fh, range(n), strict=False):
                r = json.loads(line)
                context = r["context"]
                if task == "summarization":
                    context = " ".join(context.split(" ")[:400])
                out.append((task, context, r.get("question", "")))
    return out


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from taco.llm.embedded import load_tokenizer
    from taco.llm.local import LocalLLM

    tmp = tmp_path_factory.mktemp("baselines")
    counter = HFTokenCounter(load_tokenizer(None))  # the embedded target LLM's tokens
    selector = Compressor.from_pretrained(
        tiny_encoder_folder(tmp / "enc", classifier=True), device="cpu", token_counter=counter
    )
    lm = LocalLLM.from_source(str(tiny_causal_lm_folder(tmp / "lm")), device="cpu", dtype="float32")
    from taco.llm.cache import LLMCache

    store = LLMCache(tmp / "store.sqlite")
    compressors = [
        bl.RandomDrop(selector, seed=0),
        bl.Truncate(selector),
        bl.QuestionOverlap(selector),
        bl.SelectiveContext(selector, lm, store=store),
        bl.ModelCompressor("trained", selector),
    ]
    return {"counter": counter, "selector": selector, "compressors": compressors, "store": store}


@pytest.mark.slow
def test_every_baseline_meets_the_budget_and_is_deterministic(setup: dict[str, Any]) -> None:
    counter = setup["counter"]
    for task, text, question in real_texts():
        origin = counter(text)
        for comp in setup["compressors"]:
            scored = comp.score(text, question)
            for rate in RATES:
                res, seconds = comp.select(scored, rate)
                budget = math.floor(rate * origin + 1e-9)
                where = f"{comp.name} on {task} at rate {rate}"
                assert res.origin_tokens == origin, where
                assert res.compressed_tokens == counter(res.compressed_prompt), where
                assert res.compressed_tokens <= budget, where
                assert res.compressed_tokens >= 0.8 * budget - 8, where  # the budget is used
                assert seconds >= 0 and scored.seconds >= 0
                again = comp.compress(text, rate=rate, question=question)
                assert again.compressed_prompt == res.compressed_prompt, where


@pytest.mark.slow
def test_the_trained_path_is_inference(setup: dict[str, Any]) -> None:
    """ModelCompressor ranks and selects exactly as Compressor.compress (what is served)."""
    selector, trained = setup["selector"], setup["compressors"][-1]
    for _, text, question in real_texts():
        for rate in (0.33, 0.5):
            mine = trained.compress(text, rate=rate, question=question)
            served = selector.compress(text, rate=rate, question=question)
            assert mine.compressed_prompt == served.compressed_prompt
            assert mine.kept_spans == served.kept_spans


@pytest.mark.slow
def test_truncate_keeps_the_first_words_and_overlap_the_question_sentences(
    setup: dict[str, Any],
) -> None:
    selector = setup["selector"]
    text = (
        "The weather was mild all week. Paris is the capital of France. "
        "Cheese is made from milk. Rivers flow to the sea."
    )
    res = bl.Truncate(selector).compress(text, rate=0.3)
    assert text.startswith(res.compressed_prompt.split(" ")[0])
    assert res.kept_spans[0][0] == 0
    res = bl.QuestionOverlap(selector).compress(
        text, rate=0.3, question="What is the capital of France?"
    )
    assert "capital of France" in res.compressed_prompt
    assert "weather" not in res.compressed_prompt


@pytest.mark.slow
def test_selective_context_keeps_its_surprisal_with_the_measured_seconds(
    setup: dict[str, Any],
) -> None:
    sc = setup["compressors"][3]
    text = "A rare zygomorphic flower bloomed in the garden near the old stone wall."
    first = sc.surprisal(text)
    assert not first[3] and first[1].shape[0] == first[0].shape[0] > 0
    second = sc.surprisal(text)
    assert second[3]  # from the store, with the seconds measured the first time
    assert second[2] == pytest.approx(first[2])
    np.testing.assert_allclose(second[1], first[1])


def test_uncompressed_is_the_whole_prompt() -> None:
    res = bl.Uncompressed(lambda t: len(t.split())).compress("a b c", rate=0.33)
    assert (res.compressed_prompt, res.origin_tokens, res.compressed_tokens) == ("a b c", 3, 3)


def test_llmlingua_needs_its_side_venv(tmp_path: Path) -> None:
    with pytest.raises(bl.LLMLinguaError, match=r"not found \(run `make llmlingua-venv`"):
        bl.LLMLinguaCompressor(
            tmp_path / "missing/bin/python", tmp_path, len, tiktoken_dir=tmp_path / "tt"
        )


SIDE_VENV = ROOT / ".venv-llmlingua"
SIDE_PYTHON = SIDE_VENV / "bin" / "python"


@pytest.mark.slow
@pytest.mark.skipif(
    not (SIDE_VENV / ".installed").exists(), reason="no llmlingua side venv (make llmlingua-venv)"
)
def test_llmlingua_meets_the_budget(setup: dict[str, Any], tmp_path: Path) -> None:
    counter = setup["counter"]
    # llmlingua cuts 512-token chunks: the checkpoint needs 512 positions
    folder = tiny_encoder_folder(tmp_path / "model", classifier=True, max_positions=512)
    comp = bl.LLMLinguaCompressor(SIDE_PYTHON, folder, counter, tiktoken_dir=tmp_path / "tt")
    try:
        for _, text, _ in real_texts()[:4]:
            for rate in (0.33, 0.5):
                res = comp.compress(text, rate=rate)
                assert res.compressed_tokens == counter(res.compressed_prompt)
                assert res.compressed_tokens <= math.floor(rate * counter(text) + 1e-9)
                assert res.compressed_tokens > 0
    finally:
        comp.close()
