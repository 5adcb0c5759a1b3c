"""taco.Compressor: budgets, faithfulness to the original text, LLMLingua API, bad input."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from taco.compress.compressor import CompressionResult, Compressor, fit_budget
from taco.compress.selection import HFTokenCounter, select_words, token_budget
from taco.compress.text import render
from tests.helpers.paths import shared_data
from tests.helpers.tokenizers_local import tiny_xlmr_compressor_folder


@pytest.fixture(scope="module")
def comp() -> Compressor:
    return Compressor.from_pretrained(device="cpu")


@pytest.fixture(scope="module")
def squad() -> list[dict]:
    return [json.loads(line) for line in shared_data("qa").open()]


@pytest.fixture(scope="module")
def code() -> list[dict]:
    return [json.loads(line) for line in shared_data("code").open()][:40]


def assert_made_of_original(text: str, res: CompressionResult) -> None:
    """Kept words appear byte-for-byte, in order; everything between them is whitespace."""
    pos = 0
    prev_end = -1
    for s, e in res.kept_spans:
        assert s >= prev_end, "kept spans overlap or are out of order"
        prev_end = e
        word = text[s:e]
        found = res.compressed_prompt.find(word, pos)
        assert found >= 0, f"kept word {word!r} missing from the output"
        assert res.compressed_prompt[pos:found].strip() == "", "non-space text was invented"
        pos = found + len(word)
    assert res.compressed_prompt[pos:].strip() == ""


def recount(comp: Compressor, text: str) -> int:
    return len(comp.tokenizer(text, add_special_tokens=False)["input_ids"])


def test_budget_is_global_and_tight(comp, squad):
    texts = [r["context"] for r in squad[:30:3]]
    for rate in (0.1, 0.33, 0.5, 0.9, 1.0):
        for text, res in zip(texts, comp.compress_many(texts, rate=rate), strict=True):
            budget = token_budget(res.origin_tokens, rate, None)
            assert res.origin_tokens == recount(comp, text)
            assert res.compressed_tokens == recount(comp, res.compressed_prompt)
            assert res.compressed_tokens <= budget
            # short of the budget by less than the smallest word left out
            al = comp.prepare(text).al
            kept = {s for s, _ in res.kept_spans}
            dropped = [
                n for s, n in zip(al.word_start, al.word_n_tokens, strict=True) if s not in kept
            ]
            if dropped:
                assert budget - res.compressed_tokens < min(dropped)
            assert_made_of_original(text, res)


def test_target_tokens(comp, squad):
    text = squad[0]["context"]
    res = comp.compress(text, target_tokens=40)
    assert 40 - 5 < res.compressed_tokens <= 40
    assert comp.compress(text, target_tokens=10**6).compressed_tokens == res.origin_tokens
    assert comp.compress(text, target_tokens=0).compressed_prompt == ""


def test_case_unicode_and_punctuation_survive(comp):
    text = "Été à Paris: naïve CAFÉ, 東京 — O'Brien's iPhone™ costs $3.50!"
    res = comp.compress(text, rate=1.0)
    assert res.compressed_prompt == text
    half = comp.compress(text, rate=0.5)
    assert_made_of_original(text, half)
    assert half.compressed_tokens <= half.origin_tokens // 2


def test_code_lines_keep_their_indentation(comp, code):
    for row in code:
        text = row["context"]
        assert comp.compress(text, rate=1.0).compressed_prompt == text.rstrip()
        res = comp.compress(text, rate=0.6)
        assert_made_of_original(text, res)
        lines = text.split("\n")
        for out_line in res.compressed_prompt.split("\n"):
            if not out_line.strip():
                continue
            indent = out_line[: len(out_line) - len(out_line.lstrip())]
            first = out_line.split()[0]
            assert any(
                line.startswith(indent)
                and line[len(indent) : len(indent) + 1].strip() != ""
                and first in line
                for line in lines
            ), f"line {out_line!r} has an indentation no original line with its words has"


def test_without_newline_force_text_is_one_line(comp, code):
    text = code[0]["context"]
    res = comp.compress(text, rate=0.7, force_tokens=())
    assert "\n" not in res.compressed_prompt
    assert_made_of_original(text, res)


def test_force_tokens_and_digits_are_kept(comp, squad):
    text = squad[5]["context"] + " Answer: yes?"
    res = comp.compress(text, rate=0.3, force_tokens=("\n", "Answer:", "?"), keep_digits=True)
    assert "Answer:" in res.compressed_prompt and "?" in res.compressed_prompt
    for number in re.findall(r"\S*\d\S*", text):
        for part in re.findall(r"\d+", number):
            assert part in res.compressed_prompt


def test_deterministic_across_loads(squad):
    text = squad[10]["context"]
    a = Compressor.from_pretrained(device="cpu").compress(text, rate=0.4)
    b = Compressor.from_pretrained(device="cpu").compress(text, rate=0.4)
    assert a == b


def test_compress_many_matches_one_by_one(comp, squad):
    texts = [r["context"] for r in squad[:8]] + ["short text here.", ""]
    together = comp.compress_many(texts, rate=0.5)
    alone = [comp.compress(t, rate=0.5) for t in texts]
    assert [r.kept_spans for r in together] == [r.kept_spans for r in alone]


def test_question_is_read_but_never_compressed(comp, squad):
    row = squad[3]
    plain = comp.token_probabilities([row["context"]])[0]
    aware = comp.token_probabilities([row["context"]], [row["question"]])[0]
    assert plain.shape == aware.shape and not np.allclose(plain, aware)
    res = comp.compress(row["context"], rate=0.5, question=row["question"])
    assert_made_of_original(row["context"], res)
    assert res.origin_tokens == recount(comp, row["context"])


def test_llmlingua_dict_format(comp, squad):
    d = comp.compress_prompt(squad[0]["context"], rate=0.5, force_tokens=["\n", "?"])
    assert set(d) == {
        "compressed_prompt",
        "compressed_prompt_list",
        "origin_tokens",
        "compressed_tokens",
        "ratio",
        "rate",
        "saving",
    }
    assert re.fullmatch(r"\d+\.\dx", d["ratio"]) and re.fullmatch(r"\d+\.\d%", d["rate"])
    assert d["saving"].startswith(", Saving $") and d["saving"].endswith(" in GPT-4.")
    assert isinstance(d["origin_tokens"], int) and d["compressed_tokens"] <= d["origin_tokens"] // 2
    ratio = d["origin_tokens"] / d["compressed_tokens"]
    assert d["ratio"] == f"{ratio:.1f}x"


def test_compress_prompt_list_context_and_target_token(comp, squad):
    contexts = [squad[0]["context"], squad[60]["context"], squad[120]["context"]]
    d = comp.compress_prompt(contexts, target_token=100)
    assert len(d["compressed_prompt_list"]) == 3
    assert d["compressed_prompt"] == "\n\n".join(d["compressed_prompt_list"])
    assert d["compressed_tokens"] <= 100
    default = comp.compress_prompt(contexts[0])  # LLMLingua's default rate 0.5
    assert default["compressed_tokens"] <= default["origin_tokens"] // 2
    with pytest.raises(TypeError, match="unsupported argument"):
        comp.compress_prompt(contexts[0], rate=0.5, no_such_option=True)


def test_compress_prompt_word_labels(comp, squad):
    """LLMLingua-2's return_word_label: every word with 1 (kept) or 0, in order; the kept
    ones rebuild the compressed prompt."""
    context = squad[5]["context"]
    d = comp.compress_prompt(context, rate=0.4, return_word_label=True)
    pairs = [item.rsplit(" ", 1) for item in d["fn_labeled_original_prompt"].split("\t\t|\t\t")]
    assert [w for w, _ in pairs] == [w for w, _ in pairs if w]  # no empty words
    assert {label for _, label in pairs} == {"0", "1"}
    assert "".join(w for w, _ in pairs) == "".join(context.split())  # words only, in order
    kept = [w for w, label in pairs if label == "1"]
    assert "".join(kept) == "".join(d["compressed_prompt"].split())
    custom = comp.compress_prompt(
        context, rate=0.4, return_word_label=True, word_sep="|", label_sep="="
    )["fn_labeled_original_prompt"]
    assert custom.split("|")[0] == f"{pairs[0][0]}={pairs[0][1]}"
    assert "fn_labeled_original_prompt" not in comp.compress_prompt(context, rate=0.4)


def test_compress_prompt_token_to_word_and_drop_consecutive(comp, squad, code, caplog):
    context = code[3]["context"]  # identifiers: many words of several sub-tokens
    mean = comp.compress_prompt(context, rate=0.5, return_word_label=True)
    first = comp.compress_prompt(context, rate=0.5, token_to_word="first", return_word_label=True)
    assert first["fn_labeled_original_prompt"] != mean["fn_labeled_original_prompt"]
    with pytest.raises(ValueError, match="token_to_word must be one of mean, first, got 'max'"):
        comp.compress_prompt(context, rate=0.5, token_to_word="max")
    dots = "Alpha beta. . . Gamma delta, , epsilon. . zeta eta theta iota kappa."
    kept = comp.compress_prompt(dots, rate=1.0, force_tokens=[".", ","])["compressed_prompt"]
    assert ". . ." in kept
    once = comp.compress_prompt(dots, rate=1.0, force_tokens=[".", ","], drop_consecutive=True)
    assert ". ." not in once["compressed_prompt"] and ", ," not in once["compressed_prompt"]
    assert (
        once["compressed_prompt"] == "Alpha beta. Gamma delta, epsilon. zeta eta theta iota kappa."
    )
    assert once["compressed_tokens"] < comp.compress_prompt(dots, rate=1.0)["compressed_tokens"]
    caplog.clear()
    with caplog.at_level("WARNING", logger="taco.compress.compressor"):
        comp.compress_prompt(context, rate=0.5, chunk_end_tokens=[".", "\n"])  # the default
        comp.compress_prompt(context, rate=0.5, chunk_end_tokens=(".", "\n"))  # as a tuple
        assert not caplog.records
        comp.compress_prompt(context, rate=0.5, use_context_level_filter=True)
    assert "use_context_level_filter=True: no effect in taco" in caplog.text


@pytest.mark.parametrize(
    ("kwargs", "exc", "message"),
    [
        ({"rate": 0.0}, ValueError, r"rate must be in \(0, 1\]"),
        ({"rate": 1.5}, ValueError, r"rate must be in \(0, 1\]"),
        ({"rate": -0.2}, ValueError, r"rate must be in \(0, 1\]"),
        ({"rate": float("nan")}, ValueError, r"rate must be in \(0, 1\]"),
        ({"rate": "0.5"}, TypeError, "rate must be a number"),
        ({"target_tokens": -3}, ValueError, "target_tokens must be an integer >= 0"),
        ({"target_tokens": 2.5}, TypeError, "target_tokens must be an integer"),
        ({"rate": 0.5, "target_tokens": 10}, ValueError, "not both"),
        ({}, ValueError, "give rate"),
        ({"rate": 0.5, "force_tokens": [3]}, TypeError, "force_tokens"),
        ({"rate": 0.5, "unit": "paragraph"}, ValueError, "unit must be one of word, sentence"),
    ],
)
def test_bad_arguments(comp, kwargs, exc, message):
    with pytest.raises(exc, match=message):
        comp.compress("some text to compress", **kwargs)


def test_bad_text_types(comp):
    with pytest.raises(TypeError, match=r"texts\[0\] must be a str"):
        comp.compress(42, rate=0.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="texts must be a list"):
        comp.compress_many("not a list", rate=0.5)
    with pytest.raises(ValueError, match="target_token must be >= 0"):
        comp.compress_prompt("text", target_token=-5)
    with pytest.raises(TypeError, match=r"context must be a str or a list of strings, got bytes"):
        comp.compress_prompt(b"some bytes", rate=0.5)


@pytest.mark.parametrize("text", ["", "   ", "\n\t \n"])
def test_empty_text_gives_empty_result(comp, text):
    res = comp.compress(text, rate=0.5)
    assert res.compressed_prompt == "" and res.rate == 1.0 and res.origin_tokens == 0
    assert res.to_llmlingua_dict()["ratio"] == "1.0x"


def test_pluggable_token_counter(squad):
    words = Compressor.from_pretrained(device="cpu", token_counter=lambda s: len(s.split()))
    text = squad[7]["context"]
    res = words.compress(text, rate=0.5)
    assert res.origin_tokens == len(text.split())
    assert res.compressed_tokens == len(res.compressed_prompt.split()) <= len(text.split()) // 2


def test_hf_token_counter_counts_batches(comp):
    counter = HFTokenCounter(comp.tokenizer)
    assert counter("hello world") == 2
    assert counter.count_many(["hello world", "a b c", ""]) == [2, 3, 0]


def test_select_words_greedy_fill():
    scores = np.array([0.9, 0.8, 0.7, 0.1])
    costs = np.array([2, 3, 1, 1])
    assert select_words(scores, costs, 4).tolist() == [True, False, True, True]
    # without fill: a prefix of the ranking only (span units)
    assert select_words(scores, costs, 4, unit="sentence").tolist() == [True, False, False, False]
    assert select_words(scores, costs, 0).tolist() == [False] * 4
    assert select_words(scores, costs, 100).all()


def test_bf16_option_runs_and_respects_budget(squad):
    bf = Compressor.from_pretrained(device="cpu", dtype="bfloat16")
    res = bf.compress(squad[2]["context"], rate=0.5)
    assert res.compressed_tokens <= res.origin_tokens // 2
    assert_made_of_original(squad[2]["context"], res)


def test_sentencepiece_checkpoint_from_a_local_folder(tmp_path):
    # The folder name says nothing about the model type: it must not matter.
    folder = tiny_xlmr_compressor_folder(tmp_path / "my-compressor")
    comp = Compressor.from_pretrained(folder, device="cpu")
    assert comp.max_seq_len == 64  # from the tokenizer/config, not from a name
    text = "Hello, world! Don't stop: 42 apples.\n    def foo(x):\n        return x.bar()\n" * 8
    res = comp.compress(text, rate=0.5, question="what does foo return?")
    assert res.compressed_tokens <= res.origin_tokens // 2
    assert_made_of_original(text, res)
    assert len(comp.prepare(text).chunks) > 1


def test_the_api_keeps_off_the_hub_unless_told(monkeypatch):
    from taco.layout import hub_offline

    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    assert hub_offline()  # nothing set: offline, nothing is downloaded
    with pytest.raises(FileNotFoundError, match="set HF_HUB_OFFLINE=0 to download it"):
        Compressor.from_pretrained("models/llmlingua-2-xlm-roberta-large-meetingbank")
    for value, offline in (("0", False), ("false", False), ("1", True), ("yes", True)):
        monkeypatch.setenv("HF_HUB_OFFLINE", value)
        assert hub_offline() is offline
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    assert hub_offline()


def test_offline_a_hub_id_loads_from_the_hugging_face_cache(monkeypatch, tmp_path):
    """A hub id downloaded before (its snapshot in the Hugging Face cache) loads offline."""
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    from huggingface_hub import constants

    # a cache of this test's own (read at call time by huggingface_hub and transformers; the
    # module may have been imported before tests/conftest.py set HF_HOME)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    repo = tmp_path / "hub" / "models--someorg--tiny-compressor"
    tiny_xlmr_compressor_folder(repo / "snapshots" / "0123abcd")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123abcd", encoding="utf-8")
    comp = Compressor.from_pretrained("someorg/tiny-compressor", device="cpu")
    res = comp.compress("a cached model compresses this sentence offline", rate=0.5)
    assert 0 < res.compressed_tokens <= res.origin_tokens // 2
    with pytest.raises(FileNotFoundError, match="nor in the Hugging Face cache"):
        Compressor.from_pretrained("someorg/not-cached", device="cpu")


def test_load_errors_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"missing': no such folder$"):
        Compressor.from_pretrained(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="keeps off the Hugging Face Hub"):
        Compressor.from_pretrained("someone/some-model")
    (tmp_path / "not-a-model").mkdir()  # a folder, but no config.json: one clear error
    with pytest.raises(FileNotFoundError, match="not-a-model: not a model folder"):
        Compressor.from_pretrained(tmp_path / "not-a-model")
    from transformers import BertConfig, BertForTokenClassification

    three = BertConfig(
        vocab_size=50, hidden_size=8, num_hidden_layers=1, num_attention_heads=1,
        intermediate_size=8, num_labels=3,
    )  # fmt: skip
    BertForTokenClassification(three).save_pretrained(tmp_path / "three")
    with pytest.raises(ValueError, match="2-label"):
        Compressor.from_pretrained(tmp_path / "three")


def test_100k_word_prompt():
    comp = Compressor.from_pretrained(device="cpu", dtype="bfloat16")  # same path, half the time
    rows = [json.loads(line) for line in shared_data("summarization").open()]
    words: list[str] = []
    for row in rows:
        words.extend(row["context"].split(" "))
        if len(words) >= 100_000:
            break
    text = " ".join(words[:100_000])
    res = comp.compress(text, rate=0.3)
    assert res.origin_tokens > 100_000
    assert res.compressed_tokens <= token_budget(res.origin_tokens, 0.3, None)
    assert res.compressed_tokens > 0.29 * res.origin_tokens
    assert res.kept_spans == tuple(sorted(res.kept_spans))


VOCAB = ["alpha", "Beta", "γάμμα", "42", "x.y", "(", ")", ",", ".", "?", "naïve", "don't", "東京"]


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    words=st.lists(st.sampled_from(VOCAB), min_size=1, max_size=60),
    seps=st.lists(st.sampled_from([" ", "  ", "\n", "\n    ", "\t", ""]), min_size=60, max_size=60),
    rate=st.floats(min_value=0.05, max_value=1.0),
)
def test_properties(comp, words, seps, rate):
    text = "".join(w + s for w, s in zip(words, seps, strict=False))
    res = comp.compress(text, rate=rate)
    assert_made_of_original(text, res)
    assert res.compressed_tokens <= token_budget(res.origin_tokens, rate, None)
    # output words are an in-order subsequence of the input words
    al_in, al_out = comp.prepare(text).al, comp.prepare(res.compressed_prompt).al
    it = iter(al_in.words())
    assert all(any(w == v for v in it) for w in al_out.words())
    assert comp.compress(text, rate=rate) == res


SENTENCES = (
    "Rain fell all day. The Normans conquered England in 1066 under William. "
    "Bread was cheap. Markets opened early."
)


def test_sentence_unit_keeps_the_best_sentences_whole(comp, tmp_path):
    from taco.compress.compressor import ranking_scores
    from taco.compress.text import span_ids

    doc = comp.prepare(SENTENCES)
    spans = span_ids(doc.al, "sentence")
    assert spans.max() == 3  # four sentences
    # scores: the second sentence is best, the fourth next
    scores = np.array([[0.1, 0.9, 0.0, 0.5][s] for s in spans])
    keys = ranking_scores(scores, doc.al, "sentence")
    costs = doc.al.word_n_tokens
    second = spans == 1
    budget = int(costs[second].sum()) + 2  # sentence 2 whole + the first words of sentence 4
    keep = select_words(keys, costs, budget)
    assert keep[second].all() and not keep[(spans == 0) | (spans == 2)].any()
    fourth = np.flatnonzero(spans == 3)
    assert keep[fourth[0]] and not keep[fourth[-1]]  # the next span's start, in order

    res = comp.compress(SENTENCES, rate=0.5, unit="sentence")
    assert res.compressed_tokens <= int(0.5 * doc.al.n_tokens)
    words = comp.prepare(SENTENCES).al
    kept = {(s, e) for s, e in res.kept_spans}
    per_span = [
        sum(
            (int(words.word_start[w]), int(words.word_end[w])) in kept
            for w in np.flatnonzero(spans == u)
        )
        / int((spans == u).sum())
        for u in range(4)
    ]
    assert sum(0 < f < 1 for f in per_span) <= 1  # at most one sentence kept in part

    comp.unit = "line"
    try:
        comp.save_pretrained(tmp_path / "m")
    finally:
        comp.unit = "word"
    assert json.loads((tmp_path / "m" / "config.json").read_text())["taco_unit"] == "line"
    assert Compressor.from_pretrained(tmp_path / "m", device="cpu").unit == "line"
    assert Compressor.from_pretrained(tmp_path / "m", device="cpu", unit="word").unit == "word"


@pytest.mark.parametrize("unit", ["sentence", "line"])
def test_span_units_on_real_text_meet_the_budget_with_at_most_one_partial_span(
    comp, squad, code, unit
):
    from taco.compress.text import span_ids

    texts = [r["context"] for r in squad[:20:4]] + [r["context"] for r in code[:10:2]]
    for rate in (0.2, 0.5, 0.8):
        results = comp.compress_many(texts, rate=rate, unit=unit, force_tokens=("\n", "the"))
        for text, res in zip(texts, results, strict=True):
            assert res.compressed_tokens <= token_budget(res.origin_tokens, rate, None)
            assert_made_of_original(text, res)
            al = comp.prepare(text).al
            spans = span_ids(al, unit)
            starts = {s for s, _ in res.kept_spans}
            keep = np.array([s in starts for s in al.word_start.tolist()])
            forced = np.array([w == "the" for w in al.words()])
            partial = [
                u
                for u in range(int(spans.max()) + 1)
                if 0 < keep[(spans == u) & ~forced].mean() < 1
            ]
            assert len(partial) <= 1, (unit, rate, partial)  # forced words aside
            assert (
                keep[forced].all()
                or res.compressed_tokens >= token_budget(res.origin_tokens, rate, None) - 2
            )


def test_fit_budget_refills_when_word_costs_overcount(comp):
    """Word costs that overcount the text (here 2x) would leave half the budget unused;
    ``fit_budget`` moves the word budget until the real count is full but never over, and
    trims when even the first pick is over."""
    al = comp.prepare("alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu", "").al
    words = al.words()
    costs = np.array([2 * len(w) for w in words])
    scores = -np.arange(len(words), dtype=float)  # keep the start

    def count(text: str) -> int:
        return len(text.replace(" ", ""))

    budget = 30

    def select(b: int) -> np.ndarray:
        return select_words(scores, costs, b)

    _, text, n = fit_budget(al, select, np.argsort(scores), costs, budget, count)
    assert n == count(text) and budget - max(map(len, words)) < n <= budget
    assert count(render(al, select(budget))) <= budget // 2 + 1  # one plain pick: half empty
    # under-counting costs: the first pick is over the budget, so it is trimmed to fit
    cheap = np.ones(len(words), dtype=int)
    _, text, n = fit_budget(al, lambda b: select_words(scores, cheap, b), np.argsort(scores),
                            cheap, budget, count, rounds=1)  # fmt: skip
    assert n == count(text) and budget - 2 * max(map(len, words)) < n <= budget


def test_position_prior_ranks_towards_truncation_and_is_saved(comp, code, tmp_path):
    """A position prior β makes items rank by logit(p) − β·start: a huge β keeps a prefix
    (truncation), a middling one mixes, and β travels in config.json."""
    text = code[3]["context"]
    al = comp.prepare(text).al
    plain = comp.compress(text, rate=0.5, force_tokens=())
    comp.position_prior = 1e4
    try:
        trunc = comp.compress(text, rate=0.5, force_tokens=())
        comp.position_prior = 2.0
        mixed = comp.compress(text, rate=0.5, force_tokens=())
        comp.save_pretrained(tmp_path / "m")
    finally:
        comp.position_prior = 0.0
    first = [int(np.searchsorted(al.word_start, s)) for s, _ in trunc.kept_spans]
    dropped = next(i for i in range(al.n_words) if i not in first)
    assert first[:dropped] == list(range(dropped)) and dropped > al.n_words // 4
    assert len(first) - dropped <= 3  # past the cut, only the fill of small words
    assert len({plain.compressed_prompt, mixed.compressed_prompt, trunc.compressed_prompt}) == 3
    saved = json.loads((tmp_path / "m" / "config.json").read_text())
    assert saved["taco_position_prior"] == 2.0
    loaded = Compressor.from_pretrained(tmp_path / "m", device="cpu")
    assert loaded.position_prior == 2.0
    again = loaded.compress(text, rate=0.5, force_tokens=())
    assert again.compressed_prompt == mixed.compressed_prompt
    assert Compressor.from_pretrained(tmp_path / "m", position_prior=0.0).position_prior == 0.0
    with pytest.raises(ValueError, match="position_prior must be a finite number >= 0"):
        Compressor.from_pretrained(tmp_path / "m", device="cpu", position_prior=-1.0)
