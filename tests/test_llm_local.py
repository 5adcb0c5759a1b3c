"""Local transformers backend: batched greedy decoding, target-only log-likelihood, SmolLM2."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from taco.llm.base import CachedLLM, LLMError
from taco.llm.cache import LLMCache
from taco.llm.local import LocalLLM, resolve_device, resolve_dtype
from tests.helpers.tiny_causal_lm import tiny_causal_lm_folder

PROMPTS = [
    "The quick brown fox",
    "def add(a, b):\n    return a + b and then a much longer tail of words to pad the batch",
    "Paris",
    "Answer the following question based on the provided context. Meetings summarise",
    "x",
]
CONTINUATIONS = ["jumps over", "the lazy dog.", "is the capital of France", "", "Berlin"]


@pytest.fixture(scope="module", params=[False, True], ids=["plain", "chat"])
def tiny(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> LocalLLM:
    folder = tiny_causal_lm_folder(tmp_path_factory.mktemp("tiny"), chat=request.param)
    return LocalLLM.from_source(str(folder), dtype="float32", batch_size=2, max_new_tokens=10)


def test_chat_template_is_used_when_the_tokenizer_has_one(tiny: LocalLLM) -> None:
    ids = tiny._prompt_ids("hello", 0)
    text = tiny.tokenizer.decode(ids)
    if tiny.use_chat:
        assert text.startswith("<|user|>") and text.endswith("<|assistant|>")
    else:
        assert text == "hello"


def test_batched_generation_with_left_padding_matches_one_by_one(tiny: LocalLLM) -> None:
    batched = tiny.generate(PROMPTS)
    single = [tiny.generate([p])[0] for p in PROMPTS]
    assert batched == single
    assert all(isinstance(out, str) for out in batched)
    assert len(set(batched)) > 1  # the prompts really condition the output


def test_generation_is_greedy_and_respects_max_new_tokens(
    tiny: LocalLLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert tiny.generate(PROMPTS[:2]) == tiny.generate(PROMPTS[:2])
    lengths = []
    real = tiny.model.generate

    def spy(**kwargs: object) -> torch.Tensor:
        out = real(**kwargs)
        lengths.append(out.shape[1] - kwargs["input_ids"].shape[1])  # type: ignore[union-attr]
        return out

    monkeypatch.setattr(tiny.model, "generate", spy)
    tiny.generate([PROMPTS[0]], max_new_tokens=2)
    tiny.generate([PROMPTS[0]])
    assert lengths[0] <= 2 and lengths[1] <= tiny.max_new_tokens


def _reference_loglik(llm: LocalLLM, prompt: str, continuation: str) -> tuple[float, int]:
    """Sum of log-probs from one unpadded full forward pass (the textbook computation)."""
    p_ids = llm._prompt_ids(prompt, 0)
    c_ids = llm.tokenizer(continuation, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logp = llm.model(torch.tensor([p_ids + c_ids])).logits.log_softmax(-1)[0]
    total = sum(logp[len(p_ids) - 1 + j, tok].item() for j, tok in enumerate(c_ids))
    return total, len(c_ids)


def test_loglik_matches_a_full_forward_pass_and_batching(tiny: LocalLLM) -> None:
    means = tiny.loglik(PROMPTS, CONTINUATIONS)
    sums = tiny.loglik(PROMPTS, CONTINUATIONS, reduction="sum")
    single = [tiny.loglik([p], [c])[0] for p, c in zip(PROMPTS, CONTINUATIONS, strict=True)]
    assert means == pytest.approx(single, abs=1e-4)
    for p, c, mean, total in zip(PROMPTS, CONTINUATIONS, means, sums, strict=True):
        if not c:
            assert mean == 0.0 and total == 0.0
            continue
        ref_sum, n = _reference_loglik(tiny, p, c)
        assert total == pytest.approx(ref_sum, abs=1e-4)
        assert mean == pytest.approx(ref_sum / n, abs=1e-4)
        assert mean < 0


def test_loglik_rejects_mismatched_lengths(tiny: LocalLLM) -> None:
    with pytest.raises(ValueError, match="differ in length"):
        tiny.loglik(["a", "b"], ["c"])


def test_prompts_longer_than_the_context_window_are_cut_in_the_middle(
    tiny: LocalLLM, caplog: pytest.LogCaptureFixture
) -> None:
    long_prompt = "The quick brown fox jumps over the lazy dog. " * 100
    with caplog.at_level(logging.WARNING):
        out = tiny.generate([long_prompt], max_new_tokens=4)
    assert isinstance(out[0], str)
    assert "cut to" in caplog.text
    ids = tiny._prompt_ids(long_prompt, 4)
    assert len(ids) == tiny.max_len - 4


def test_count_tokens(tiny: LocalLLM) -> None:
    counts = tiny.count_tokens(["", "The quick brown fox", "The quick brown fox " * 3])
    assert counts[0] == 0 and 0 < counts[1] < counts[2]


def test_cache_wrapper_answers_repeats_without_calling_the_model(
    tiny: LocalLLM, tmp_path: Path
) -> None:
    cached = CachedLLM(tiny, LLMCache(tmp_path / "c.sqlite"))
    first = cached.generate(PROMPTS[:3] + PROMPTS[:1])  # a repeated prompt is asked once
    assert cached.calls == 3
    assert cached.generate(PROMPTS[:3]) == first[:3]
    assert cached.calls == 3 and cached.stats.hits >= 3
    ll = cached.loglik(PROMPTS[:2], CONTINUATIONS[:2])
    assert cached.loglik(PROMPTS[:2], CONTINUATIONS[:2]) == ll
    assert cached.metrics()["llm/calls"] == 5.0


def test_dtype_and_device_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    cpu = torch.device("cpu")
    assert resolve_dtype("float32", cpu) is torch.float32
    assert resolve_dtype("bfloat16", cpu) is torch.bfloat16
    assert resolve_dtype("float16", cpu) is torch.float16
    monkeypatch.setattr("taco.device.bf16_supported", lambda device: True)
    assert resolve_dtype("auto", cpu) is torch.bfloat16
    monkeypatch.setattr("taco.device.bf16_supported", lambda device: False)
    assert resolve_dtype("auto", cpu) is torch.float32
    monkeypatch.setattr("taco.llm.local.bf16_supported", lambda device: False)
    assert resolve_dtype("auto", torch.device("cuda")) is torch.float16  # an older GPU
    with pytest.raises(LLMError, match=r"llm\.dtype"):
        resolve_dtype("int3", cpu)
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected


@pytest.mark.parametrize(
    "hub_env", [{"HF_HUB_OFFLINE": "1"}, {}, {"HF_HUB_OFFLINE": "0", "TRANSFORMERS_OFFLINE": "1"}]
)
def test_offline_hub_id_gives_one_clear_error(
    monkeypatch: pytest.MonkeyPatch, hub_env: dict[str, str]
) -> None:
    """Offline by construction: with the variables set, unset (the API's default) or vetoed."""
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    for var, value in hub_env.items():
        monkeypatch.setenv(var, value)
    with pytest.raises(LLMError, match=r"keeps off the Hugging Face Hub.*HF_HUB_OFFLINE=0"):
        LocalLLM.from_source("some-org/not-a-local-model", dtype="float32")


def test_missing_gguf_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(LLMError, match="GGUF file not found"):
        LocalLLM.from_source(str(tmp_path / "nope.gguf"))


@pytest.mark.slow
def test_embedded_smollm2_answers_a_real_prompt(caplog: pytest.LogCaptureFixture) -> None:
    from taco.llm.cache import cache_dir

    llm = LocalLLM.from_source(None)  # dequantises into $TACO_CACHE_DIR once
    folder = cache_dir() / "models" / "smollm2-135m-instruct"
    assert (folder / "model.safetensors").is_file() and (folder / "config.json").is_file()
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="taco.llm.local"):
        again = LocalLLM.from_source(None)
    assert not any("dequantising" in r.getMessage() for r in caplog.records)  # cached load
    assert again.model_id == llm.model_id == "embedded:SmolLM2-135M-Instruct.Q4_1.gguf"
    assert llm.use_chat

    prompt = (
        "Answer the following question based on the provided context (which may be compressed)."
        "\nParis is the capital and largest city of France.\n"
        "Question: What is the capital of France?\nAnswer:"
    )
    answer = llm.generate([prompt], max_new_tokens=16)[0]
    assert answer is not None and "Paris" in answer
    good, bad = llm.loglik([prompt, prompt], ["Paris", "Bananas are yellow."])
    assert good > bad
