"""Tiny models, prepared data and params files for the warmstart/train tests (no Hub)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from tests.helpers.paths import shared_data


def tiny_bert_config(vocab_size: int, max_positions: int = 128) -> Any:
    """A 1-layer, hidden-32, 2-label BERT config (fast enough for any test)."""
    from transformers import BertConfig

    return BertConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=max_positions,
        num_labels=2,
    )


def tiny_encoder_folder(
    folder: Path, *, classifier: bool = False, seed: int = 0, max_positions: int = 128
) -> Path:
    """A tiny BERT with the embedded MiniLM tokenizer (a bare encoder by default)."""
    import torch
    from transformers import AutoTokenizer, BertForTokenClassification, BertModel

    from taco.compress.encoder import embedded_encoder_path

    tok = AutoTokenizer.from_pretrained(str(embedded_encoder_path()))
    cfg = tiny_bert_config(tok.vocab_size, max_positions)
    torch.manual_seed(seed)
    if classifier:
        model = BertForTokenClassification(cfg)
    else:
        model = BertModel(cfg, add_pooling_layer=False)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def write_prepared(root: Path, task: str, n: int, *, split: str = "train") -> list[dict[str, Any]]:
    """The first ``n`` rows of ../shared/data/<task>/dev.jsonl as prepared Example rows."""
    src = shared_data({"code": "code", "qa": "qa", "summarization": "summarization"}[task])
    rows = []
    with src.open(encoding="utf-8") as fh:
        for line in fh:
            r = json.loads(line)
            refs = r.get("answers") or [r.get("reference", "")]
            rows.append(
                {
                    "id": r["id"],
                    "task": task,
                    "context": r["context"],
                    "question": r.get("question", ""),
                    "references": refs,
                    "group": r["group"],
                    "source": "test",
                }
            )
            if len(rows) == n:
                break
    out = root / "data" / "prepared" / task / f"{split}.jsonl"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return rows


def write_params(root: Path, sections: dict[str, Any]) -> Path:
    path = root / "params.yaml"
    path.write_text(yaml.safe_dump(sections), encoding="utf-8")
    return path


class FakeLLM:
    """A deterministic, instant stand-in for the target LLM.

    ``loglik`` = log of the share of the continuation's words found in the prompt, so a
    compression that keeps the teacher output's words scores higher (a learnable signal).
    """

    def __init__(self, fail_every: int = 0) -> None:
        self.calls = 0
        self.fail_every = fail_every

    def count_tokens(self, texts):  # non-blank characters: monotone in what is kept
        return [len("".join(t.split())) for t in texts]

    def loglik(self, prompts, continuations, *, reduction="mean"):
        import math

        out = []
        for p, c in zip(prompts, continuations, strict=True):
            self.calls += 1
            if self.fail_every and self.calls % self.fail_every == 0:
                out.append(None)
                continue
            words = set(p.lower().split())
            want = c.lower().split()
            share = sum(w in words for w in want) / max(len(want), 1)
            out.append(math.log(max(share, 1e-3)))
        return out

    def generate(self, prompts, max_new_tokens=None):
        self.calls += len(prompts)
        return [" ".join(p.split()[-4:]) for p in prompts]

    def metrics(self):
        return {"llm/calls": float(self.calls), "llm/cache_hit_rate": 0.0}


def write_teacher(
    root: Path, task: str, rows: list[dict[str, Any]], llm: Any, split: str = "train"
) -> None:
    """Teacher rows for a prepared split: the first reference as the teacher output."""
    out = root / "data" / "teacher" / task / f"{split}.jsonl"
    out.parent.mkdir(parents=True, exist_ok=True)
    counts = llm.count_tokens([r["context"] for r in rows])
    out.write_text(
        "".join(
            json.dumps(
                {"id": r["id"], "task": task, "output": r["references"][0], "context_tokens": n}
            )
            + "\n"
            for r, n in zip(rows, counts, strict=True)
        ),
        encoding="utf-8",
    )


def train_setup(root: Path, *, n_rows: int = 8, train: dict[str, Any] | None = None) -> Path:
    """Prepared + teacher data, a tiny compressor and a params.yaml for a few fast steps."""
    rows = write_prepared(root, "code", n_rows)
    write_teacher(root, "code", rows, FakeLLM())
    enc = tiny_encoder_folder(root / "enc", classifier=True)
    sections = {
        "base": {"task": "code", "data_dir": str(root / "data"), "seed": 1},
        "reward": {"name": "loglik", "tolerance_tokens": 1000},
        "train": {
            "base_model": str(enc),
            "steps": 4,
            "prompts_per_step": 2,
            "samples_per_prompt": 3,
            "device": "cpu",
            "bf16": False,
            "max_seq_len": 128,
            "checkpoint_every": 2,
            "head_lr": 0.05,
            "sampling": "bernoulli",
            "position_prior": None,
            **(train or {}),
        },
    }
    return write_params(root, sections)
