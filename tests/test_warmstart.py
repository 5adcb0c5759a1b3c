"""taco.rl.warmstart: self-information and LLM-deletion labels, cross-entropy stage, skip rule."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from taco.compress.compressor import Compressor
from taco.compress.encoder import embedded_encoder_path
from taco.compress.text import align
from taco.config import load_params
from taco.rl import warmstart as ws
from taco.rl.checkpoint import is_compressor
from taco.rl.optim import freeze_lower_layers, training_attention
from tests.helpers.tiny_causal_lm import tiny_causal_lm_folder
from tests.helpers.training import tiny_encoder_folder, write_params, write_prepared


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(embedded_encoder_path()))


def test_char_surprisal_and_word_information() -> None:
    text = "ab cd"
    offsets = np.array([[0, 2], [2, 5]])  # "ab", " cd"
    per_char = ws.char_surprisal(text, offsets, np.array([2.0, 3.0]))
    assert per_char.tolist() == pytest.approx([1.0, 1.0, 1.0, 1.0, 1.0])

    class Al:
        word_start = np.array([0, 3])
        word_end = np.array([2, 5])

    assert ws.word_information(Al, per_char).tolist() == pytest.approx([2.0, 2.0])  # type: ignore[arg-type]


def test_budget_labels_rank_by_information_per_token(tokenizer) -> None:
    al = align("alpha beta gamma delta", tokenizer)
    assert al.n_tokens == 4
    keep = ws.budget_labels(al, np.array([1.0, 5.0, 0.5, 3.0]), rate=0.5)
    assert keep.tolist() == [False, True, False, True]


def test_align_deletion_in_order_and_share() -> None:
    original = ["The", "cat", "sat", "on", "the", "mat", "."]
    keep, share = ws.align_deletion(original, ["cat", "the", "Mat"])
    assert keep.tolist() == [False, True, False, False, True, True, False]
    assert share == 1.0
    keep, share = ws.align_deletion(original, ["dog", "sat", "mat"])
    assert share == pytest.approx(2 / 3)
    assert keep.tolist() == [False, False, True, False, False, True, False]


def test_llm_labels_filter_bad_alignments(tokenizer) -> None:
    texts = ["The cat sat on the mat today.", "Paris is the capital of France.", "A b c d."]

    class FakeLLM:
        def generate(self, prompts, n):
            assert "You may ONLY delete words" in prompts[0] and texts[0] in prompts[0]
            return ["cat sat mat.", "Totally different words here", None]

    als = [align(t, tokenizer) for t in texts]
    labels = ws.llm_labels(
        FakeLLM(), als, tokenizer, goal="summarize", min_alignment=0.8, max_new_tokens=16
    )
    assert labels[1] is None and labels[2] is None
    assert labels[0] is not None
    assert [w for w, k in zip(als[0].words(), labels[0], strict=True) if k] == [
        "cat",
        "sat",
        "mat",
        ".",
    ]


def test_self_information_labels_meet_the_rate(tmp_path: Path, tokenizer) -> None:
    from taco.llm.local import LocalLLM

    lm = LocalLLM.from_source(str(tiny_causal_lm_folder(tmp_path / "lm")), device="cpu")
    texts = ["def add(a, b):\n    return a + b", "The quick brown fox jumps over the lazy dog."]
    als = [align(t, tokenizer) for t in texts]
    labels = ws.self_information_labels(lm, als, rate=0.5)
    for al, lab in zip(als, labels, strict=True):
        kept = int(al.word_n_tokens[lab].sum())
        assert 0 < kept <= math.floor(0.5 * al.n_tokens)
        assert kept >= math.floor(0.5 * al.n_tokens) - int(al.word_n_tokens.max())


def test_stage_trains_saves_and_skips(tmp_path: Path) -> None:
    write_prepared(tmp_path, "code", 12)
    base = tiny_encoder_folder(tmp_path / "enc")
    lm = tiny_causal_lm_folder(tmp_path / "lm")
    sections = {
        "base": {"task": "code", "data_dir": str(tmp_path / "data")},
        "llm": {"model": str(lm), "device": "cpu", "dtype": "float32", "cache": False},
        "warmstart": {
            "labels": "self_information",
            "epochs": 4,
            "batch_size": 4,
            "head_lr": 0.01,
            "lr": 1e-3,
        },
        "train": {"base_model": str(base), "device": "cpu", "max_seq_len": 128, "bf16": False},
    }
    params = load_params(write_params(tmp_path, sections))
    record = ws.run_warmstart(params)
    out = tmp_path / "data" / "models" / "warmstart"
    assert record["labelled"] == 12 and not record["skipped"]
    assert record["loss_last_epoch"] < record["loss_first_epoch"]
    assert json.loads((out / "warmstart.json").read_text())["labels"] == "self_information"
    assert is_compressor(out)
    comp = Compressor.from_pretrained(str(out), device="cpu")
    assert comp.compress("def f(x):\n    return x + 1", rate=0.5).compressed_tokens > 0

    sections["train"]["base_model"] = str(out)  # already a compressor → skipped
    params = load_params(write_params(tmp_path, sections))
    skipped = ws.run_warmstart(params)
    assert skipped["skipped"] is True
    assert not (out / "config.json").exists() and (out / "warmstart.json").exists()

    # teacher none: no warm start even for a bare encoder; RL starts from its fresh head
    from taco.rl.train import start_model

    sections["train"]["base_model"] = str(base)
    sections["warmstart"]["labels"] = "none"
    params = load_params(write_params(tmp_path, sections))
    skipped = ws.run_warmstart(params)
    assert skipped["skipped"] is True and "labels: none" in skipped["reason"]
    assert not (out / "config.json").exists() and start_model(params) == str(base)
    (out / "config.json").write_text("{}")  # a stale warm start is not picked up either
    assert start_model(params) == str(base)


def test_stage_with_no_rows_says_so(tmp_path: Path) -> None:
    path = tmp_path / "data" / "prepared" / "code" / "train.jsonl"
    path.parent.mkdir(parents=True)
    path.write_text("")
    params = load_params(
        write_params(
            tmp_path,
            {
                "base": {"task": "code", "data_dir": str(tmp_path / "data")},
                "warmstart": {"labels": "self_information"},
            },
        )
    )
    with pytest.raises(ValueError, match="no training rows"):
        ws.run_warmstart(params)


def test_position_bias_moves_labels_towards_the_start(tokenizer) -> None:
    al = align("alpha beta gamma delta", tokenizer)
    info = np.array([0.0, 1.0, 2.0, 3.0])  # later words more surprising
    assert ws.budget_labels(al, info, 0.5).tolist() == [False, False, True, True]
    assert ws.budget_labels(al, info, 0.5, position_bias=1.0).tolist() == [True, True, False, False]
    mixed = ws.budget_labels(al, info, 0.5, position_bias=0.6)  # mixed: .6, .53, .47, .4
    assert mixed.tolist() == [True, True, False, False]


def test_batched_surprisal_equals_one_text_at_a_time(tmp_path: Path) -> None:
    from taco.llm.local import LocalLLM

    lm = LocalLLM.from_source(str(tiny_causal_lm_folder(tmp_path / "lm")), device="cpu")
    texts = ["The quick brown fox.", "def add(a, b):\n    return a + b", "", "Paris is big."]
    together = ws.lm_surprisal(lm.model, lm.tokenizer, texts)
    alone = [ws.lm_surprisal(lm.model, lm.tokenizer, [t])[0] for t in texts]
    for (o1, s1), (o2, s2) in zip(together, alone, strict=True):
        np.testing.assert_array_equal(o1, o2)
        np.testing.assert_allclose(s1, s2, rtol=1e-4, atol=1e-4)
    assert together[2][1].size == 0 and together[0][1].size == together[0][0].shape[0]


def test_overlap_labels_keep_the_spans_the_answer_comes_from(tokenizer) -> None:
    text = (
        "Rain fell all day in the valley. The Normans conquered England in 1066. "
        "Bread was cheap that year."
    )
    al = align(text, tokenizer)
    target = "They conquered England. When did the Normans conquer?"
    words = al.words()
    sent = ws.overlap_labels([al], [target], 0.4, "sentence")[0]
    normans = slice(words.index("The"), words.index("1066") + 2)
    assert sent[normans].all() and not sent[: words.index("The")].any()
    assert int(al.word_n_tokens[sent].sum()) <= int(0.4 * al.n_tokens)
    word = ws.overlap_labels([al], [target], 0.4, "word")[0]
    assert word[words.index("Normans")] and word[words.index("conquered")]
    assert not word[words.index("Bread")]
    # no overlap at all: the start (truncation)
    none = ws.overlap_labels([al], ["zzz qqq"], 0.4, "sentence")[0]
    assert none[0] and not none[-1]
    # full position bias: the start whatever the overlap
    start = ws.overlap_labels([al], [target], 0.4, "sentence", position_bias=1.0)[0]
    assert start[0] and not start[normans][1:].any()  # sentence 1, then the next one's start


def test_overlap_stage_reads_teacher_outputs(tmp_path: Path) -> None:
    from tests.helpers.training import FakeLLM, write_teacher

    rows = write_prepared(tmp_path, "qa", 10)
    write_teacher(tmp_path, "qa", rows, FakeLLM())
    base = tiny_encoder_folder(tmp_path / "enc")
    sections = {
        "base": {"task": "qa", "data_dir": str(tmp_path / "data")},
        "warmstart": {"labels": "overlap", "epochs": 2, "batch_size": 4, "rate": 0.5},
        "train": {
            "base_model": str(base),
            "device": "cpu",
            "max_seq_len": 128,
            "bf16": False,
            "unit": "sentence",
        },
    }
    record = ws.run_warmstart(load_params(write_params(tmp_path, sections)))
    assert record["labels"] == "overlap" and record["labelled"] == 10
    assert 0.2 < record["label_keep_share"] <= 0.6
    out = tmp_path / "data" / "models" / "warmstart"
    assert Compressor.from_pretrained(str(out), device="cpu").unit == "sentence"


def test_freeze_lower_layers_trains_only_the_top_of_the_stack() -> None:
    import torch
    from transformers import BertForTokenClassification

    from tests.helpers.training import tiny_bert_config

    cfg = tiny_bert_config(100)
    cfg.num_hidden_layers = 3
    model = BertForTokenClassification(cfg)
    frozen = freeze_lower_layers(model, 1)
    trainable = {n for n, q in model.named_parameters() if q.requires_grad}
    assert trainable and all(
        n.startswith(("bert.encoder.layer.2.", "classifier")) for n in trainable
    )
    assert any(n.startswith("classifier") for n in trainable)
    assert frozen == sum(q.numel() for q in model.parameters() if not q.requires_grad)
    ids = torch.randint(0, 100, (2, 7))
    model(input_ids=ids).logits.sum().backward()
    for n, q in model.named_parameters():
        assert (q.grad is not None) == (n in trainable), n
    with pytest.raises(ValueError, match=r"train\.train_layers: 4 > the model's 3 layers"):
        freeze_lower_layers(BertForTokenClassification(cfg), 4)


def test_train_layers_is_range_checked(tmp_path) -> None:
    from taco.config import ConfigError
    from tests.helpers.training import train_setup

    with pytest.raises(ConfigError, match=r"train\.train_layers"):
        load_params(train_setup(tmp_path, train={"train_layers": -1}))
    assert load_params(train_setup(tmp_path, train={"train_layers": 2})).train.train_layers == 2


def test_training_attention_is_eager_on_cpu_and_not_saved(tmp_path: Path) -> None:
    """CPU training switches to eager attention (a 2-3x faster backward there), GPUs keep
    SDPA, and a saved model reloads with the library's default for inference."""
    import torch

    comp = Compressor.from_pretrained(str(tiny_encoder_folder(tmp_path / "enc")), device="cpu")
    default = comp.model.config._attn_implementation
    training_attention(comp.model, torch.device("cuda"))  # not moved: only the type counts
    assert comp.model.config._attn_implementation == default
    training_attention(comp.model, comp.device)
    assert comp.model.config._attn_implementation == "eager" != default
    comp.save_pretrained(tmp_path / "saved")
    again = Compressor.from_pretrained(str(tmp_path / "saved"), device="cpu")
    assert again.model.config._attn_implementation == default
