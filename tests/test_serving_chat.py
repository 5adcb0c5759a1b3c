"""What the service calls in taco.compress: per-request batches and chat messages."""

from __future__ import annotations

import copy
import json

import pytest

from taco.compress.chat import ChatPolicy, compress_chat, join_question, split_question
from taco.compress.compressor import CompressionRequest, Compressor
from tests.helpers.paths import shared_data
from tests.helpers.training import tiny_encoder_folder


@pytest.fixture(scope="module")
def comp(tmp_path_factory: pytest.TempPathFactory) -> Compressor:
    folder = tiny_encoder_folder(tmp_path_factory.mktemp("enc"), classifier=True)
    return Compressor.from_pretrained(folder, device="cpu")


@pytest.fixture(scope="module")
def code() -> list[str]:
    with shared_data("code").open(encoding="utf-8") as fh:
        return [json.loads(line)["context"] for _, line in zip(range(12), fh, strict=False)]


def test_compress_batch_with_mixed_options_equals_one_by_one(comp, code) -> None:
    requests = [
        CompressionRequest(code[0], rate=0.5),
        CompressionRequest(code[1], target_tokens=12, unit="line"),
        CompressionRequest(code[2], rate=0.33, force_tokens=("\n", "return")),
        CompressionRequest(code[3], rate=0.7, keep_digits=True, question="what does it return?"),
        CompressionRequest(code[4], rate=0.2, unit="sentence"),
        CompressionRequest("", rate=0.5),
    ]
    together = comp.compress_batch(requests)
    for req, res in zip(requests, together, strict=True):
        alone = comp.compress(
            req.text,
            rate=req.rate,
            target_tokens=req.target_tokens,
            force_tokens=req.force_tokens,
            keep_digits=req.keep_digits,
            question=req.question,
            unit=req.unit,
        )
        assert res == alone


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (CompressionRequest("x", rate=1.5), r"rate must be in \(0, 1\]"),
        (CompressionRequest("x", rate=0.5, target_tokens=3), "either rate or target_tokens"),
        (CompressionRequest("x", target_tokens=-1), "target_tokens must be an integer >= 0"),
        (CompressionRequest("x", rate=0.5, unit="paragraph"), "unit must be one of"),
        (CompressionRequest("x", rate=0.5, force_tokens=("",)), "non-empty strings"),
    ],
)
def test_an_invalid_request_in_a_batch_names_its_field(comp, request_, message) -> None:
    with pytest.raises((ValueError, TypeError), match=message):
        comp.compress_batch([CompressionRequest("fine", rate=0.5), request_])


@pytest.mark.parametrize(
    ("text", "context", "question"),
    [
        ("ctx one\n\nctx two\n\nWhat is it?", "ctx one\n\nctx two", "What is it?"),
        ("only one paragraph? yes", "only one paragraph? yes", ""),
        ("ctx\n\nq?\n\n  ", "ctx", "q?"),
        ("\n\nq?", "\n\nq?", ""),
    ],
)
def test_split_question(text, context, question) -> None:
    assert split_question(text) == (context, question)
    if question:
        assert join_question("C", question) == f"C\n\n{question}"


def test_compress_chat_compresses_the_chosen_texts_only(comp, code) -> None:
    long_ctx = code[5]
    question = "What does this function return?"
    messages = [
        {"role": "system", "content": code[6]},
        {"role": "user", "content": code[7], "name": "alice"},
        {"role": "assistant", "content": code[8]},
        {"role": "user", "content": "too short"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": code[9]},
                {"type": "image_url", "image_url": {"url": "data:,"}},
                {"type": "text", "text": f"{long_ctx}\n\n{question}"},
            ],
        },
    ]
    before = copy.deepcopy(messages)
    policy = ChatPolicy(rate=0.5, roles=("user",), min_tokens=8)
    out = compress_chat(comp, messages, policy)

    assert messages == before, "the input list is not modified"
    assert out.messages[0] == messages[0] and out.messages[2] == messages[2]  # other roles
    assert out.messages[3] == messages[3]  # shorter than min_tokens
    assert out.messages[1]["name"] == "alice"
    assert out.messages[1]["content"] == comp.compress(code[7], rate=0.5).compressed_prompt
    parts = out.messages[4]["content"]
    assert parts[1] == messages[4]["content"][1]  # the image part passes unchanged
    assert parts[0]["text"] == comp.compress(code[9], rate=0.5).compressed_prompt
    ctx = comp.compress(long_ctx, rate=0.5, question=question).compressed_prompt
    assert parts[2]["text"] == f"{ctx}\n\n{question}", "the last question is kept verbatim"
    assert out.compressed_texts == 3
    expected = [comp.compress(t, rate=0.5) for t in (code[7], code[9])]
    expected.append(comp.compress(long_ctx, rate=0.5, question=question))
    assert out.origin_tokens == sum(r.origin_tokens for r in expected)
    assert out.compressed_tokens == sum(r.compressed_tokens for r in expected)
    assert out.compressed_tokens < out.origin_tokens


def test_compress_chat_without_question_and_other_roles(comp, code) -> None:
    text = f"{code[10]}\n\nWhat is it?"
    messages = [{"role": "system", "content": code[11]}, {"role": "user", "content": text}]
    policy = ChatPolicy(rate=0.4, roles=("system", "user"), min_tokens=0, keep_question=False)
    out = compress_chat(comp, messages, policy)
    assert out.messages[0]["content"] == comp.compress(code[11], rate=0.4).compressed_prompt
    assert out.messages[1]["content"] == comp.compress(text, rate=0.4).compressed_prompt
    nothing = compress_chat(comp, messages, ChatPolicy(rate=0.4, roles=("assistant",)))
    assert nothing.messages == messages and nothing.compressed_texts == 0


def test_malformed_messages_pass_through(comp) -> None:
    messages = ["not a dict", {"role": "user", "content": None}, {"role": "user"}]
    out = compress_chat(comp, messages, ChatPolicy(rate=0.5, min_tokens=0))
    assert out.messages == messages and out.compressed_texts == 0


def test_bad_policy_rate_is_an_error(comp) -> None:
    with pytest.raises(ValueError, match=r"rate must be in \(0, 1\]"):
        compress_chat(
            comp, [{"role": "user", "content": "a b c"}], ChatPolicy(rate=0.0, min_tokens=0)
        )
