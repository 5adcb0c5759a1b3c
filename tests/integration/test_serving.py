"""The BentoML service for real: a tiny trained-format model packaged into a temporary
BENTOML_HOME by `taco package` (bento built with every proxy pointing nowhere: no network),
served by `bentoml serve` on 127.0.0.1 from an empty folder (the bento carries its code and
the resolved params), called with bentoml.SyncHTTPClient and raw HTTP;
the proxy in front of the fake OpenAI-compatible server of the tests."""

from __future__ import annotations

import concurrent.futures
import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import bentoml
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from taco.compress.chat import ChatPolicy, compress_chat
from taco.compress.compressor import Compressor
from taco.compress.selection import HFTokenCounter
from taco.llm.embedded import load_tokenizer
from tests.helpers import packaging as fx
from tests.helpers.bento_server import BentoServer
from tests.helpers.openai_server import FakeOpenAIServer
from tests.helpers.paths import ROOT, shared_data

KEY = "service-key-123"
UPSTREAM_KEY = "upstream-key-456"
RATE = 0.5  # the fixture's recommended rate: the service's default
NOWHERE = "http://127.0.0.1:9"  # a proxy that refuses every connection

pytestmark = pytest.mark.slow


class Service:
    def __init__(self, url: str, model_tag: str, model_dir: Path, upstream: Any) -> None:
        self.url, self.model_tag, self.model_dir = url, model_tag, model_dir
        self.upstream, self.gate = upstream
        self.http = httpx.Client(base_url=url, timeout=60, headers={"x-api-key": KEY})

    def post(self, path: str, body: Any, **kw: Any) -> httpx.Response:
        return self.http.post(path, json=body, **kw)


@pytest.fixture(scope="module")
def upstream():
    gate = threading.Event()
    gate.set()
    with FakeOpenAIServer(stream_gate=gate) as server:
        yield server, gate


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, upstream) -> Service:
    root = tmp_path_factory.mktemp("serving")
    serve = {
        "api_key_env": "TACO_TEST_KEY",
        "max_request_bytes": 20_000,
        "max_prompt_chars": 4_000,
        "max_batch_items": 8,
        "upstream": {"base_url": upstream[0].base_url, "api_key_env": "TACO_TEST_UPSTREAM"},
        "proxy": {"min_tokens": 8},
    }
    fx.package_project(root, build=True, serve=serve)
    env = {
        **os.environ,
        "BENTOML_HOME": str(root / "bentoml"),
        "PYTHONPATH": str(ROOT),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "TACO_TEST_KEY": KEY,
        "TACO_TEST_UPSTREAM": UPSTREAM_KEY,
    }
    offline = {**env, "HTTP_PROXY": NOWHERE, "HTTPS_PROXY": NOWHERE, "ALL_PROXY": NOWHERE}
    offline.update({"http_proxy": NOWHERE, "https_proxy": NOWHERE, "NO_PROXY": "", "no_proxy": ""})
    proc = subprocess.run(
        [sys.executable, "-m", "taco", "package"],
        cwd=root,
        env=offline,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads((root / "data" / "reports" / "package.json").read_text())
    assert report["bento_tag"], report
    name, version = report["model_tag"].split(":")
    model_dir = root / "bentoml" / "models" / name / version
    # Served from an empty folder with no PYTHONPATH: the bento carries its code and params.
    elsewhere = root / "elsewhere"
    elsewhere.mkdir()
    env.pop("PYTHONPATH")
    with BentoServer(
        report["bento_tag"], env=env, cwd=elsewhere, log_path=root / "serve.log"
    ) as srv:
        yield Service(srv.url, report["model_tag"], model_dir, upstream)


@pytest.fixture(scope="module")
def llm_tokens() -> HFTokenCounter:
    """The target LLM's token count (the embedded SmolLM2's), loaded independently."""
    return HFTokenCounter(load_tokenizer(None))


@pytest.fixture(scope="module")
def local(service: Service, llm_tokens: HFTokenCounter) -> Compressor:
    """The same stored model, in process, its budget in the target LLM's tokens."""
    return Compressor.from_pretrained(service.model_dir, device="cpu", token_counter=llm_tokens)


@pytest.fixture(scope="module")
def code() -> list[str]:
    with shared_data("code").open(encoding="utf-8") as fh:
        return [json.loads(line)["context"] for _, line in zip(range(40), fh, strict=False)]


def expected(local: Compressor, text: str, question: str = "", **kw: Any) -> dict[str, Any]:
    kw.setdefault("rate", None if "target_tokens" in kw else RATE)
    res = local.compress(text, question=question, **kw)
    prompt = f"{res.compressed_prompt}\n\n{question}" if question else res.compressed_prompt
    return {
        "compressed_prompt": prompt,
        "origin_tokens": res.origin_tokens,
        "compressed_tokens": res.compressed_tokens,
        "rate": res.rate,
        "ratio": res.ratio,
    }


def core(result: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in result.items() if k != "model"}


def test_compress_equals_the_in_process_compressor(service, local, code, llm_tokens) -> None:
    with bentoml.SyncHTTPClient(service.url, token=KEY) as client:
        one = client.compress({"prompt": code[0]})
        many = client.compress([{"prompt": code[1], "rate": 0.33}, {"prompt": code[2]}])
    assert one["model"] == service.model_tag
    # the budget is counted in the target LLM's tokens, as recommended_rate was measured
    assert one["origin_tokens"] == llm_tokens(code[0])
    assert one["compressed_tokens"] == llm_tokens(one["compressed_prompt"])
    assert one["compressed_tokens"] <= RATE * one["origin_tokens"]
    assert core(one) == expected(local, code[0])
    assert [core(r) for r in many] == [
        expected(local, code[1], rate=0.33),
        expected(local, code[2]),
    ]
    raw = service.post(
        "/compress",
        {"context": code[3], "question": "What does it return?", "target_tokens": 20},
    )
    assert raw.status_code == 200
    want = expected(local, code[3], "What does it return?", target_tokens=20)
    assert core(raw.json()) == want
    assert raw.json()["compressed_prompt"].endswith("\n\nWhat does it return?")
    lines = service.post("/compress", {"prompt": code[4], "unit": "line", "rate": 0.4})
    assert core(lines.json()) == expected(local, code[4], unit="line", rate=0.4)


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        ({"prompt": "a b", "rate": 0}, 422, "rate must be in (0, 1], got 0"),
        ({"prompt": "a b", "rate": 1.5}, 422, "rate must be in (0, 1], got 1.5"),
        ({"prompt": "a b", "rate": "half"}, 422, "rate: Input should be a valid number"),
        ({"prompt": "a b", "target_tokens": -3}, 422, "target_tokens must be an integer >= 0"),
        ({"prompt": "a b", "rate": 0.5, "target_tokens": 3}, 422, "either rate or target_tokens"),
        ({"prompt": "a b", "unit": "paragraph"}, 422, "unit: Input should be 'word'"),
        ({"prompt": "a b", "force_tokens": [""]}, 422, "force_tokens[0]: String should have"),
        ({"rate": 0.5}, 422, "give exactly one of prompt or context"),
        ({"prompt": "a", "context": "b"}, 422, "give exactly one of prompt or context"),
        ({"prompt": "a b", "temperature": 1}, 422, "temperature: Extra inputs are not permitted"),
        ({"prompt": "x" * 4001}, 422, "prompt: String should have at most 4000 characters"),
        ([{"prompt": "a"}] * 9, 422, "List should have at most 8 items"),
        ([{"prompt": "a"}, {"prompt": "b", "rate": 7}], 422, "[1]: rate must be in (0, 1]"),
        ("just a string", 422, "Input should be a valid"),
    ],
)
def test_each_invalid_request_is_422_naming_the_field(service, body, status, says) -> None:
    response = service.post("/compress", body)
    assert response.status_code == status, response.text
    assert says in response.json()["error"]


def test_malformed_oversized_and_unauthorised(service) -> None:
    h = {"content-type": "application/json", "x-api-key": KEY}
    bad = service.http.post("/compress", content=b'{"prompt": "a', headers=h)
    assert bad.status_code == 400 and "not valid JSON" in bad.json()["error"]
    assert service.http.post("/compress", content=b"", headers=h).status_code == 400
    big = service.post("/compress", {"prompt": "word " * 5000})
    assert big.status_code == 413
    assert "serve.max_request_bytes = 20000" in big.json()["error"]
    anonymous = httpx.post(f"{service.url}/compress", json={"prompt": "a b"}, timeout=30)
    assert anonymous.status_code == 401 and "API key" in anonymous.json()["error"]
    wrong = httpx.post(
        f"{service.url}/compress",
        json={"prompt": "a b"},
        headers={"authorization": "Bearer nope"},
        timeout=30,
    )
    assert wrong.status_code == 401
    bearer = httpx.post(
        f"{service.url}/compress",
        json={"prompt": "a b"},
        headers={"authorization": f"Bearer {KEY}"},
        timeout=30,
    )
    assert bearer.status_code == 200
    assert service.http.get("/compress").status_code == 405
    for probe in ("/healthz", "/readyz", "/metrics", "/docs.json"):  # no key needed
        assert httpx.get(f"{service.url}{probe}", timeout=30).status_code == 200


def test_16_concurrent_requests_equal_one_by_one(service, local, code) -> None:
    texts = code[10:26]
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda t: service.post("/compress", {"prompt": t}), texts))
    assert [a.status_code for a in answers] == [200] * 16
    assert [core(a.json()) for a in answers] == [expected(local, t) for t in texts]


def test_llmlingua_drop_in(service, local, code) -> None:
    body = {"context": [code[5], code[6]], "rate": 0.4, "force_tokens": ["\n"]}
    body["use_sentence_level_filter"] = False  # an LLMLingua option without effect here
    got = service.post("/compress_llmlingua", body)
    assert got.status_code == 200
    want = local.compress_prompt([code[5], code[6]], rate=0.4, force_tokens=["\n"])
    assert got.json() == want  # LLMLingua's keys and formats (tests/test_compressor.py)
    unknown = service.post("/compress_llmlingua", {"context": "a b", "dynamic_x": 1})
    assert unknown.status_code == 422 and "dynamic_x" in unknown.json()["error"]
    labelled = {"context": code[5], "rate": 0.4, "return_word_label": True, "label_sep": "="}
    got = service.post("/compress_llmlingua", {**labelled, "drop_consecutive": True})
    assert got.status_code == 200
    want = local.compress_prompt(
        code[5], rate=0.4, return_word_label=True, label_sep="=", drop_consecutive=True
    )
    assert got.json() == want and "fn_labeled_original_prompt" in want
    bad = service.post("/compress_llmlingua", {**labelled, "token_to_word": "max"})
    assert bad.status_code == 422 and "token_to_word" in bad.json()["error"]


def test_model_endpoint_describes_the_served_model(service) -> None:
    info = service.http.get("/model").json()
    assert info["tag"] == service.model_tag
    assert info["stage"] == "candidate" and info["task"] == "code"
    assert info["recommended_rate"] == RATE == info["default_rate"]
    assert info["budget_tokens"] == "llm"  # the units the evaluation measured the rate in
    assert info["data_version"] == "0123456789abcdef0123456789abcdef.dir"
    assert info["metrics"]["code/rate_0.5/trained/bleu"] == 0.35
    assert info["gate_passed"] is True
    assert httpx.get(f"{service.url}/model", timeout=30).status_code == 401


def chat(question: str, context: str) -> dict[str, Any]:
    return {
        "model": "upstream-model",
        "temperature": 0,
        "messages": [
            {"role": "system", "content": "You summarise code."},
            {"role": "user", "content": f"{context}\n\n{question}"},
        ],
    }


def test_proxy_forwards_the_compressed_messages(service, local, code) -> None:
    server = service.upstream
    body = chat("Summarize it in one sentence.", code[7])
    answer = service.post("/v1/chat/completions", body)
    assert answer.status_code == 200, answer.text
    sent = server.requests[-1]
    policy = ChatPolicy(rate=RATE, roles=("user",), min_tokens=8)
    want = compress_chat(local, body["messages"], policy)
    assert sent["body"]["messages"] == want.messages  # the upstream saw the compressed text
    assert sent["body"]["messages"][1]["content"].endswith("\n\nSummarize it in one sentence.")
    assert {k: v for k, v in sent["body"].items() if k != "messages"} == {
        "model": "upstream-model",
        "temperature": 0,
    }
    assert sent["headers"]["authorization"] == f"Bearer {UPSTREAM_KEY}"  # never our key
    assert answer.json()["choices"][0]["message"]["content"].startswith("echo:")
    assert int(answer.headers["x-taco-origin-tokens"]) == want.origin_tokens
    assert int(answer.headers["x-taco-compressed-tokens"]) == want.compressed_tokens
    assert want.compressed_tokens < want.origin_tokens

    untouched = {**body, "taco": False}
    assert service.post("/v1/chat/completions", untouched).status_code == 200
    assert server.requests[-1]["body"]["messages"] == body["messages"]
    options = {**body, "taco": {"rate": 0.3, "roles": ["user", "system"], "min_tokens": 0}}
    assert service.post("/v1/chat/completions", options).status_code == 200
    policy = ChatPolicy(rate=0.3, roles=("user", "system"), min_tokens=0)
    assert (
        server.requests[-1]["body"]["messages"]
        == compress_chat(local, body["messages"], policy).messages
    )
    bad = service.post("/v1/chat/completions", {**body, "taco": {"rate": 2}})
    assert bad.status_code == 422 and "rate must be in (0, 1]" in bad.json()["error"]
    empty = service.post("/v1/chat/completions", {"model": "m", "messages": []})
    assert empty.status_code == 422 and "messages" in empty.json()["error"]


def test_proxy_streams_chunk_by_chunk_in_order(service, code) -> None:
    server, gate = service.upstream, service.gate
    body = {**chat("What is it?", code[8]), "stream": True}
    gate.clear()  # the fake upstream sends one event, then waits for the gate
    events = []
    sent_before = server.events_sent
    try:
        with service.http.stream("POST", "/v1/chat/completions", json=body) as resp:
            assert resp.status_code == 200
            assert resp.headers["content-type"].startswith("text/event-stream")
            lines = resp.iter_lines()
            events.append(next(line for line in lines if line.startswith("data:")))
            # The first event came through while the upstream had sent only that one.
            assert server.events_sent - sent_before == 1
            gate.set()
            events += [line for line in lines if line.startswith("data:")]
    finally:
        gate.set()
    assert events[-1] == "data: [DONE]"
    words = [json.loads(e[5:])["choices"][0]["delta"]["content"] for e in events[:-1]]
    prompt = server.requests[-1]["body"]["messages"][-1]["content"]
    assert "".join(words) == "echo: " + " ".join(prompt.split()[-6:])  # all, in order
    assert server.events_sent - sent_before == len(events)


@pytest.mark.parametrize("fault", ["429", "500", "401"])
def test_upstream_errors_come_back_with_their_status(service, code, fault) -> None:
    server = service.upstream
    server.script.append(fault)
    for stream in (False, True):
        if stream:
            server.script.append(fault)
        got = service.post("/v1/chat/completions", {**chat("Why?", code[9]), "stream": stream})
        assert got.status_code == int(fault), got.text
        if fault == "429":
            assert got.headers["retry-after"] == server.retry_after
        else:
            assert got.json()["error"]  # the upstream's own body, passed through


def test_metrics_count_what_was_sent(service, code) -> None:
    def scrape() -> dict[tuple[str, tuple], float]:
        text = httpx.get(f"{service.url}/metrics", timeout=30).text
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
            if s.name.startswith("taco_")
        }

    def delta(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    before = scrape()
    answers = [service.post("/compress", {"prompt": t, "rate": 0.5}) for t in code[26:31]]
    rejected = [service.post("/compress", {"prompt": t, "rate": 9}) for t in code[26:29]]
    after = scrape()
    assert [a.status_code for a in answers] == [200] * 5
    assert [r.status_code for r in rejected] == [422] * 3
    ep = {"endpoint": "/compress"}
    assert delta("taco_requests_total", status="200", **ep) == 5
    assert delta("taco_requests_total", status="422", **ep) == 3
    assert delta("taco_tokens_in_total", **ep) == sum(a.json()["origin_tokens"] for a in answers)
    assert delta("taco_tokens_out_total", **ep) == sum(
        a.json()["compressed_tokens"] for a in answers
    )
    assert delta("taco_achieved_rate_count", **ep) == 5
    assert delta("taco_rate_deviation_count", **ep) == 5
    deviation = sum(a.json()["rate"] - 0.5 for a in answers)
    assert delta("taco_rate_deviation_sum", **ep) == pytest.approx(deviation)
    assert delta("taco_compression_seconds_count", **ep) == 5
    assert httpx.get(f"{service.url}/readyz", timeout=30).status_code == 200
