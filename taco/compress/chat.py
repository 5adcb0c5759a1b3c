"""Chat messages through a compressor: which texts of an OpenAI-style ``messages`` list are
compressed, and the list rebuilt around them (what the serving proxy calls).

A message's text is its ``content`` string, or each ``{"type": "text", "text": ...}`` part
of a content list (images and other parts pass unchanged). A text is compressed when its
message's role is in ``ChatPolicy.roles`` and it has at least ``min_tokens`` tokens. In the
last user message, the last paragraph (after the last blank line) is the question: the
encoder reads it with the context, and it is kept verbatim after the compressed context.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from taco.compress.compressor import CompressionRequest, CompressionResult, Compressor

PARAGRAPH_BREAK = "\n\n"


@dataclasses.dataclass(frozen=True)
class ChatPolicy:
    """What ``compress_chat`` compresses: texts of ``roles`` with at least ``min_tokens``
    tokens (the compressor's budget units), to ``rate`` (fraction of tokens kept)."""

    rate: float
    roles: tuple[str, ...] = ("user",)
    min_tokens: int = 256
    keep_question: bool = True
    force_tokens: tuple[str, ...] = ("\n",)


@dataclasses.dataclass(frozen=True)
class ChatCompression:
    """``compress_chat``'s result: the rebuilt ``messages`` and, over the compressed texts
    only, their token counts before and after (questions kept verbatim not counted)."""

    messages: list[Any]
    origin_tokens: int
    compressed_tokens: int
    compressed_texts: int
    results: tuple[CompressionResult, ...]


def split_question(text: str) -> tuple[str, str]:
    """``(context, question)``: the question is the last paragraph (after the last blank
    line) when there are at least two; otherwise the whole text is context."""
    head, sep, tail = text.rstrip().rpartition(PARAGRAPH_BREAK)
    if not sep or not head.strip() or not tail.strip():
        return text, ""
    return head, tail.strip()


def join_question(compressed: str, question: str) -> str:
    """The compressed context followed by the verbatim question (as ``split_question`` cut it)."""
    if not question:
        return compressed
    return f"{compressed}{PARAGRAPH_BREAK}{question}" if compressed else question


def _texts(message: Any) -> list[tuple[Any, str]]:
    """``(key, text)`` of every text in ``message``: key None = the content string, an int =
    the index of a text part of a content list."""
    if not isinstance(message, Mapping):
        return []
    content = message.get("content")
    if isinstance(content, str):
        return [(None, content)]
    if isinstance(content, list):
        return [
            (i, part["text"])
            for i, part in enumerate(content)
            if isinstance(part, Mapping)
            and part.get("type") == "text"
            and isinstance(part.get("text"), str)
        ]
    return []


def _replace(message: Mapping[str, Any], key: Any, text: str) -> dict[str, Any]:
    out = dict(message)
    if key is None:
        out["content"] = text
    else:
        parts = list(out["content"])
        parts[key] = {**parts[key], "text": text}
        out["content"] = parts
    return out


def compress_chat(
    compressor: Compressor, messages: Sequence[Any], policy: ChatPolicy
) -> ChatCompression:
    """Compress the chosen texts of ``messages`` in one ``compress_batch`` call; every other
    message and key is returned unchanged. Raises ValueError/TypeError for a bad policy."""
    last_user = max(
        (i for i, m in enumerate(messages) if isinstance(m, Mapping) and m.get("role") == "user"),
        default=-1,
    )
    jobs: list[tuple[int, Any, str]] = []  # (message index, text key, question)
    requests: list[CompressionRequest] = []
    for i, message in enumerate(messages):
        if not isinstance(message, Mapping) or message.get("role") not in policy.roles:
            continue
        texts = _texts(message)
        for n, (key, text) in enumerate(texts):
            question = ""
            if policy.keep_question and i == last_user and n == len(texts) - 1:
                text, question = split_question(text)
            if compressor.count_tokens(text) < policy.min_tokens:
                continue
            jobs.append((i, key, question))
            requests.append(
                CompressionRequest(
                    text, rate=policy.rate, force_tokens=policy.force_tokens, question=question
                )
            )
    results = compressor.compress_batch(requests)
    out = list(messages)
    for (i, key, question), res in zip(jobs, results, strict=True):
        out[i] = _replace(out[i], key, join_question(res.compressed_prompt, question))
    return ChatCompression(
        out,
        sum(r.origin_tokens for r in results),
        sum(r.compressed_tokens for r in results),
        len(results),
        tuple(results),
    )
