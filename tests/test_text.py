"""Word alignment, chunking and text rebuilding for WordPiece and SentencePiece tokenizers."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from transformers import AutoTokenizer

from taco.compress.encoder import embedded_encoder_path
from taco.compress.text import align, chunk_spans, render, special_layout
from tests.helpers.tokenizers_local import sentencepiece_tokenizer_folder

SAMPLE = (
    "Hello, World!  Don't stop.\n"
    "    def foo(x):\n"
    "        return x.bar()  # ok\n"
    "\n"
    "Été à Paris, 東京."
)


@pytest.fixture(scope="module")
def wordpiece():
    return AutoTokenizer.from_pretrained(embedded_encoder_path())


@pytest.fixture(scope="module")
def sentencepiece(tmp_path_factory):
    return AutoTokenizer.from_pretrained(
        sentencepiece_tokenizer_folder(tmp_path_factory.mktemp("sp"))
    )


@pytest.fixture(params=["wordpiece", "sentencepiece"])
def tokenizer(request):
    return request.getfixturevalue(request.param)


def test_wordpiece_words_are_original_text_with_punctuation_split(wordpiece):
    al = align(SAMPLE, wordpiece)
    words = al.words()
    # The uncased tokenizer lower-cases internally, but words are original characters.
    assert words[:9] == ["Hello", ",", "World", "!", "Don", "'", "t", "stop", "."]
    assert "Été" in words and "Paris" in words
    assert all(SAMPLE[s:e] == w for s, e, w in zip(al.word_start, al.word_end, words, strict=True))


def test_sentencepiece_words_split_like_llmlingua2(sentencepiece):
    al = align(SAMPLE, sentencepiece)
    words = al.words()
    # "▁" marks word starts; punctuation tokens are words of their own.
    assert words[:4] == ["Hello", ",", "World", "!"]
    assert words[words.index("return") + 1 : words.index("return") + 6] == [
        "x",
        ".",
        "bar",
        "(",
        ")",
    ]
    assert "Été" in words


def test_alignment_invariants(tokenizer):
    al = align(SAMPLE, tokenizer)
    assert al.n_tokens == len(tokenizer(SAMPLE, add_special_tokens=False)["input_ids"])
    # words are contiguous token ranges covering every token, in text order
    assert al.word_first_token[0] == 0
    assert int(al.word_n_tokens.sum()) == al.n_tokens
    assert np.all(np.diff(al.word_start) > 0)
    assert np.all(al.word_end[:-1] <= al.word_start[1:])
    assert np.array_equal(np.repeat(np.arange(al.n_words), al.word_n_tokens), al.token_word)
    for w in al.words():
        assert w == w.strip() and w


def test_special_tokens_come_from_the_tokenizer(wordpiece, sentencepiece):
    bert = special_layout(wordpiece)
    assert bert.single_prefix == (wordpiece.cls_token_id,)
    assert bert.pair_mid == (wordpiece.sep_token_id,)
    assert (bert.first_type, bert.second_type) == (0, 1)
    xlmr = special_layout(sentencepiece)
    assert xlmr.single_prefix == (sentencepiece.bos_token_id,)
    assert xlmr.pair_mid == (sentencepiece.eos_token_id, sentencepiece.eos_token_id)
    ids, types, offset = xlmr.build(np.array([7, 8]), np.array([5]))
    assert ids.tolist() == [0, 5, 2, 2, 7, 8, 2] and offset == 4 and len(types) == 7


def test_chunks_fill_windows_and_cut_at_sentence_ends(wordpiece):
    text = " ".join(f"Sentence number {i} has a few words." for i in range(60))
    al = align(text, wordpiece)
    spans = chunk_spans(al, 40)
    assert spans[0][0] == 0 and spans[-1][1] == al.n_tokens
    assert all(a[1] == b[0] for a, b in itertools.pairwise(spans))
    assert all(0 < e - s <= 40 for s, e in spans)
    for _s, e in spans[:-1]:
        assert al.text[al.token_end[e - 1] - 1] == "."  # every cut after a sentence end
        assert al.token_word[e] != al.token_word[e - 1]  # never inside a word


def test_chunk_falls_back_to_word_then_window_edge(wordpiece):
    al = align("word " * 50, wordpiece)
    spans = chunk_spans(al, 7)
    assert all(e - s == 7 for s, e in spans[:-1])
    long_word = align("x" * 300, wordpiece)  # one word of many sub-tokens
    spans = chunk_spans(long_word, 5)
    assert all(e - s <= 5 for s, e in spans) and spans[-1][1] == long_word.n_tokens
    with pytest.raises(ValueError, match="window"):
        chunk_spans(al, 0)


def test_render_all_words_reproduces_text(tokenizer):
    al = align(SAMPLE, tokenizer)
    out = render(al, np.ones(al.n_words, bool))
    assert out == SAMPLE
    assert align(out, tokenizer).words() == al.words()  # every word back in its place


def test_render_keeps_line_breaks_and_indentation_on_kept_lines(wordpiece):
    al = align(SAMPLE, wordpiece)
    words = al.words()
    keep = np.zeros(al.n_words, bool)
    for w in ("Hello", "foo", "return", "bar", "Paris"):
        keep[words.index(w)] = True
    out = render(al, keep)
    assert out == "Hello\n    foo\n        return bar\n\nParis"
    flat = render(al, keep, keep_newlines=False)
    assert flat == "Hello foo return bar Paris"


def test_render_empty_mask(wordpiece):
    al = align(SAMPLE, wordpiece)
    assert render(al, np.zeros(al.n_words, bool)) == ""


def test_empty_and_whitespace_text(wordpiece):
    for text in ("", "   \n\t "):
        al = align(text, wordpiece)
        assert al.n_words == 0 and chunk_spans(al, 10) == []


def test_span_ids_split_sentences_and_lines():
    from transformers import AutoTokenizer

    from taco.compress.encoder import embedded_encoder_path
    from taco.compress.text import span_ids

    tok = AutoTokenizer.from_pretrained(str(embedded_encoder_path()))
    al = align("First one. Second, e.g. 3.5 more!\nx = f(a.b)\n  return x", tok)
    words = al.words()
    sent = span_ids(al, "sentence")
    lines = span_ids(al, "line")
    assert (span_ids(al, "word") == np.arange(al.n_words)).all()
    assert np.all(np.diff(sent) >= 0) and np.all(np.diff(lines) >= 0)
    assert sent[words.index("Second")] == sent[words.index("First")] + 1
    # "3.5" and "a.b" are no sentence ends; the line break is
    assert sent[words.index("3.5")] == sent[words.index("more")]  # a number is one word
    assert sent[words.index("f")] == sent[words.index("b")] != sent[words.index("return")]
    assert lines[words.index("First")] == lines[words.index("more")] == 0
    assert lines[words.index("x")] == 1 and lines[words.index("return")] == 2
    with pytest.raises(ValueError, match="unit must be one of"):
        span_ids(al, "paragraph")
