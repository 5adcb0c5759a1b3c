"""OpenAI-compatible backend against a real HTTP server on 127.0.0.1 that injects faults."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import pytest

from taco.config import LLMParams, OpenAIParams, from_mapping
from taco.llm import build_llm
from taco.llm.base import CachedLLM, LLMError
from taco.llm.openai import OpenAILLM, parse_chat_response, parse_retry_after
from tests.helpers.openai_server import FakeOpenAIServer, echo_responder

KEY = "sk-test-SECRET-0123456789"


@pytest.fixture(autouse=True)
def _api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TACO_TEST_KEY", KEY)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


def client(server: FakeOpenAIServer, **kw: object) -> OpenAILLM:
    options: dict[str, object] = {
        "base_url": server.base_url,
        "model": "test-model",
        "api_key_env": "TACO_TEST_KEY",
        "timeout_s": 0.3,
        "max_retries": 4,
        "backoff_base_s": 0.01,
        "backoff_max_s": 0.05,
        "concurrency": 4,
        "seed": 7,
        "max_new_tokens": 16,
    }
    options.update(kw)
    return OpenAILLM(**options)  # type: ignore[arg-type]


def test_chat_completions_wire_format() -> None:
    with FakeOpenAIServer() as server:
        out = client(server).generate(["Say hi to the tests", "second prompt"])
        assert out == [echo_responder("Say hi to the tests"), echo_responder("second prompt")]
        (request,) = [r for r in server.requests if "hi" in r["body"]["messages"][0]["content"]]
    body = request["body"]
    assert body["model"] == "test-model"
    assert body["messages"] == [{"role": "user", "content": "Say hi to the tests"}]
    assert body["temperature"] == 0 and body["seed"] == 7 and body["max_tokens"] == 16
    assert request["headers"]["authorization"] == f"Bearer {KEY}"


def test_azure_style_api_key_header() -> None:
    with FakeOpenAIServer() as server:
        client(server, api_key_header="api-key").generate(["x"])
        headers = server.requests[0]["headers"]
    assert headers["api-key"] == KEY and "authorization" not in headers


def test_every_fault_kind_is_retried_until_an_answer() -> None:
    faults = ["timeout", "429", "500", "malformed"]
    with FakeOpenAIServer(faults=faults, retry_after="0.01", timeout_sleep_s=0.6) as server:
        llm = client(server)
        assert llm.generate(["the prompt"]) == [echo_responder("the prompt")]
        assert [r["fault"] for r in server.requests] == [*faults, "ok"]
    assert llm.retries == 4 and llm.failures == 0


def test_failure_after_the_last_retry_is_none_not_an_exception(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with FakeOpenAIServer(faults=["500"] * 3 + ["503"] * 3) as server:
        llm = client(server, max_retries=2, concurrency=1)
        with caplog.at_level(logging.DEBUG):
            out = llm.generate(["first", "second"])
        assert out == [None, None]
        assert server.count() == 6  # 1 try + 2 retries each
    assert llm.failures == 2
    assert "after 3 attempts" in caplog.text


def test_client_errors_are_not_retried() -> None:
    with FakeOpenAIServer(faults=["401"]) as server:
        llm = client(server)
        assert llm.generate(["x"]) == [None]
        assert server.count() == 1


def test_retry_after_is_honoured_and_capped() -> None:
    waits: list[float] = []
    with FakeOpenAIServer(faults=["429", "429"], retry_after="0.04") as server:
        llm = client(server, sleep=waits.append, backoff_max_s=1.0)
        assert llm.generate(["x"]) == [echo_responder("x")]
    assert waits == [0.04, 0.04]
    with FakeOpenAIServer(faults=["429"], retry_after="3600") as server:
        waits.clear()
        client(server, sleep=waits.append, backoff_max_s=0.5).generate(["x"])
    assert waits == [0.5]


def test_backoff_is_exponential_with_jitter() -> None:
    waits: list[float] = []
    with FakeOpenAIServer(faults=["500"] * 4) as server:
        llm = client(server, sleep=waits.append, backoff_base_s=1.0, backoff_max_s=100.0)
        assert llm.generate(["x"]) == [echo_responder("x")]
    assert len(waits) == 4
    for attempt, wait in enumerate(waits):
        cap = 2.0**attempt
        assert cap / 2 <= wait <= cap


def test_the_key_never_reaches_logs_or_reprs(caplog: pytest.LogCaptureFixture) -> None:
    # the server echoes the Authorization header in its 500 bodies and sends a 401 body
    with FakeOpenAIServer(faults=["500", "500", "401"]) as server:
        llm = client(server, max_retries=1, concurrency=1)
        with caplog.at_level(logging.DEBUG):
            assert llm.generate(["a", "b"]) == [None, None]
        assert KEY in server.requests[0]["headers"]["authorization"]
    assert KEY not in caplog.text
    assert KEY not in repr(llm) and KEY not in repr(vars(llm))


def test_unreachable_endpoint_gives_none() -> None:  # port 9: discard, nothing listens
    llm = OpenAILLM(
        base_url="http://127.0.0.1:9/v1",
        model="m",
        max_retries=1,
        backoff_base_s=0.0,
        timeout_s=0.5,
    )
    assert llm.generate(["x"]) == [None]


def test_concurrency_limit_and_order() -> None:
    prompts = [f"prompt number {i}" for i in range(24)]
    with FakeOpenAIServer(faults=["timeout"] * 6, timeout_sleep_s=0.1) as server:
        llm = client(server, concurrency=3, timeout_s=1.0)
        assert llm.generate(prompts) == [echo_responder(p) for p in prompts]
        assert server.max_in_flight <= 3


def test_twenty_percent_random_faults_end_answered_or_none() -> None:
    prompts = [f"question {i}" for i in range(40)]
    with FakeOpenAIServer(fail_rate=0.2, seed=3, timeout_sleep_s=0.5) as server:
        llm = client(server, concurrency=8, max_retries=5)
        out = llm.generate(prompts)
        assert server.count() > len(prompts)  # faults happened and were retried
    assert all(o is None or o == echo_responder(p) for o, p in zip(out, prompts, strict=True))
    assert sum(o is not None for o in out) >= 38


def test_build_llm_from_params_with_the_cache(tmp_path: Path) -> None:
    with FakeOpenAIServer() as server:
        params = from_mapping(
            LLMParams,
            {
                "backend": "openai",
                "model": "test-model",
                "cache_path": str(tmp_path / "cache.sqlite"),
                "openai": {"base_url": server.base_url, "api_key_env": "TACO_TEST_KEY"},
            },
            "llm",
        )
        llm = build_llm(params)
        assert isinstance(llm, CachedLLM)
        first = llm.generate(["cached prompt", "another"])
        assert llm.generate(["cached prompt", "another"]) == first
        assert server.count() == 2
        assert llm.stats.hits == 2 and llm.stats.misses == 2
        assert llm.metrics()["llm/failures"] == 0.0 and llm.metrics()["llm/calls"] == 2.0
        with pytest.raises(LLMError, match="cannot score log-likelihoods"):
            llm.loglik(["p"], ["c"])


def test_from_params_passes_every_openai_key() -> None:
    endpoint = {
        "base_url": "https://example.invalid/v1",
        "api_key_env": None,
        "api_key_header": "api-key",
        "timeout_s": 7.0,
        "max_retries": 2,
        "backoff_base_s": 0.5,
        "backoff_max_s": 9.0,
        "concurrency": 3,
        "tokenizer": "some-tokenizer-folder",
    }
    assert set(endpoint) == {f.name for f in dataclasses.fields(OpenAIParams)}
    params = from_mapping(
        LLMParams,
        {"backend": "openai", "model": "m", "seed": 7, "max_new_tokens": 5, "openai": endpoint},
        "llm",
    )
    llm = OpenAILLM.from_params(params)
    got = (llm.base_url, llm.api_key_header, llm.timeout_s, llm.max_retries, llm.backoff_base_s)
    assert got == ("https://example.invalid/v1", "api-key", 7.0, 2, 0.5)
    assert (llm.backoff_max_s, llm.concurrency, llm.tokenizer_source) == (
        9.0,
        3,
        endpoint["tokenizer"],
    )
    assert (llm.model, llm.seed, llm.max_new_tokens, llm._key) == ("m", 7, 5, None)


def test_parsers() -> None:
    assert parse_retry_after("2") == 2.0
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == pytest.approx(10)
    assert parse_chat_response(b'{"choices": [{"message": {"content": "hi"}}]}') == "hi"
    for bad in (b"{", b"{}", b'{"choices": []}', b'{"choices": [{"message": {"content": 3}}]}'):
        with pytest.raises((ValueError, KeyError, IndexError)):
            parse_chat_response(bad)
