"""Tiny models, prepared data and params files for the warmstart/train tests (no Hub)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from conftest import shared_data


def tiny_encoder_folder(folder: Path, *, classifier: bool = False, seed: int = 0) -> Path:
    """A 1-layer, hidden-32 BERT with the embedded MiniLM tokenizer (a bare encoder by default)."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForTokenClassification, BertModel

    from taco.compressor import embedded_encoder_path

    tok = AutoTokenizer.from_pretrained(str(embedded_encoder_path()))
    cfg = BertConfig(
        vocab_size=tok.vocab_size,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        num_labels=2,
    )
    torch.manual_seed(seed)
    model = (
        BertForTokenClassification(cfg) if classifier else BertModel(cfg, add_pooling_layer=False)
    )
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def write_prepared(root: Path, task: str, n: int, *, split: str = "train") -> list[dict[str, Any]]:
    """The first ``n`` rows of ../shared/data/<task>/dev.jsonl as prepared Example rows."""
    src = shared_data({"code": "code", "qa": "qa"}[task])
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
