"""Tiny tokenizers and encoders built locally for tests (nothing from the Hub)."""

from __future__ import annotations

from pathlib import Path

from tokenizers import (
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    processors,
    trainers,
)

CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "Prompt compression keeps the words a large language model needs.",
    "Hello, world! Don't stop: 42 apples cost $3.50 in Zürich.",
    "def foo(x):\n    return x.bar() + 1",
    "Été à Paris, naïve café; 東京 is big.",
    "Questions? Answers! Meetings summarise decisions and actions.",
] * 20


def sentencepiece_tokenizer_folder(folder: Path, vocab_size: int = 300) -> Path:
    """A Unigram (SentencePiece-style, "▁" word starts) tokenizer with XLM-R's special
    tokens and templates, saved as an XLMRobertaTokenizer folder."""
    from transformers import XLMRobertaTokenizer

    tk = Tokenizer(models.Unigram())
    tk.normalizer = normalizers.NFKC()
    tk.pre_tokenizer = pre_tokenizers.Metaspace()
    tk.decoder = decoders.Metaspace()
    trainer = trainers.UnigramTrainer(
        vocab_size=vocab_size,
        special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
        unk_token="<unk>",
    )
    tk.train_from_iterator(CORPUS, trainer=trainer)
    bos, eos = tk.token_to_id("<s>"), tk.token_to_id("</s>")
    tk.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>",
        pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", bos), ("</s>", eos)],
    )
    tok = XLMRobertaTokenizer(
        tokenizer_object=tk,
        bos_token="<s>",
        eos_token="</s>",
        sep_token="</s>",
        cls_token="<s>",
        unk_token="<unk>",
        pad_token="<pad>",
        mask_token="<mask>",
        model_max_length=64,
    )
    folder.mkdir(parents=True, exist_ok=True)
    tok.save_pretrained(folder)
    return folder


def tiny_xlmr_compressor_folder(folder: Path) -> Path:
    """A 2-label XLM-R token classifier (hidden 32, 2 layers) with the tokenizer above."""
    import torch
    from transformers import AutoTokenizer, XLMRobertaConfig, XLMRobertaForTokenClassification

    sentencepiece_tokenizer_folder(folder)
    tok = AutoTokenizer.from_pretrained(folder)
    config = XLMRobertaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=66,
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        num_labels=2,
    )
    torch.manual_seed(0)
    model = XLMRobertaForTokenClassification(config)
    model.save_pretrained(folder)
    return folder
