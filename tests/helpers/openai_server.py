"""A real OpenAI-compatible chat-completions server on 127.0.0.1 that injects faults (for tests).

Usage::

    with FakeOpenAIServer(faults=["timeout", "429", "ok"]) as server:      # scripted, in order
        OpenAILLM(base_url=server.base_url, model="m", ...)
    with FakeOpenAIServer(fail_rate=0.2, seed=0) as server:                # 20% random faults
        ...

Faults: ``ok``, ``timeout`` (sleeps ``timeout_sleep_s`` before answering), ``429`` (with
``Retry-After: <retry_after>``), ``500``, ``503``, ``malformed`` (200 with a broken JSON body),
``401``. 5xx and 401 bodies echo the request's key header (as real servers sometimes do),
so tests can check that the client redacts the key. The answer is ``responder(prompt)``
(default: ``"echo: <last 6 words>"``).

A request with ``"stream": true`` is answered as OpenAI streams: ``text/event-stream`` over
chunked transfer encoding, one ``data: {chat.completion.chunk}`` event per word of the
answer, then ``data: [DONE]``. With ``stream_gate`` (a ``threading.Event``) the server sends
the first event, then waits for the gate before the rest, so a test can see that the first
event reached it while ``events_sent`` (events written so far, all streams) was still 1.
"""

from __future__ import annotations

import contextlib
import json
import random
import threading
import time
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

FAULTS = ("timeout", "429", "500", "503", "malformed", "401")


def echo_responder(prompt: str) -> str:
    """Deterministic answer: the prompt's last six words, prefixed."""
    return "echo: " + " ".join(prompt.split()[-6:])


class FakeOpenAIServer:
    """Threaded HTTP server speaking ``POST /v1/chat/completions``; records every request."""

    def __init__(
        self,
        faults: Iterable[str] = (),
        *,
        fail_rate: float = 0.0,
        fail_kinds: Iterable[str] = ("timeout", "429", "500", "malformed"),
        seed: int = 0,
        retry_after: str = "0.05",
        timeout_sleep_s: float = 1.0,
        responder: Callable[[str], str] = echo_responder,
        stream_gate: threading.Event | None = None,
    ) -> None:
        self.script = list(faults)
        self.fail_rate = fail_rate
        self.fail_kinds = tuple(fail_kinds)
        self.rng = random.Random(seed)
        self.retry_after = retry_after
        self.timeout_sleep_s = timeout_sleep_s
        self.responder = responder
        self.stream_gate = stream_gate
        self.events_sent = 0
        self.lock = threading.Lock()
        self.requests: list[dict[str, Any]] = []  # {"body", "headers" (lower-case names), "fault"}
        self.in_flight = 0
        self.max_in_flight = 0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        assert self._server is not None, "server not started"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def next_fault(self) -> str:
        with self.lock:
            if self.script:
                return self.script.pop(0)
            if self.fail_rate and self.rng.random() < self.fail_rate:
                return self.rng.choice(self.fail_kinds)
            return "ok"

    def count(self, fault: str | None = None) -> int:
        with self.lock:
            return sum(1 for r in self.requests if fault is None or r["fault"] == fault)

    def __enter__(self) -> FakeOpenAIServer:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # TCP_NODELAY, as production servers set it

            def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
                pass

            def _leave(self) -> None:
                """Count this request as answered (before the client can see the answer)."""
                with owner.lock:
                    if getattr(self, "_counted", False):
                        owner.in_flight -= 1
                        self._counted = False

            def _send(
                self, status: int, body: bytes, headers: dict[str, str] | None = None
            ) -> None:
                self._leave()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.wfile.write(body)

            def _event(self, data: str) -> None:
                """One SSE event as one HTTP chunk, flushed."""
                payload = f"data: {data}\n\n".encode()
                self.wfile.write(f"{len(payload):x}\r\n".encode() + payload + b"\r\n")
                self.wfile.flush()
                with owner.lock:
                    owner.events_sent += 1

            def _stream(self, answer: str, model: str) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    for i, word in enumerate(answer.split(" ")):
                        chunk = {
                            "id": "chatcmpl-test",
                            "object": "chat.completion.chunk",
                            "created": int(time.time()),
                            "model": model,
                            "choices": [
                                {
                                    "index": 0,
                                    "delta": {"content": word if i == 0 else " " + word},
                                    "finish_reason": None,
                                }
                            ],
                        }
                        self._event(json.dumps(chunk))
                        if i == 0 and owner.stream_gate is not None:
                            owner.stream_gate.wait(timeout=30)
                    self._event("[DONE]")
                    self.wfile.write(b"0\r\n\r\n")
                    self.wfile.flush()

            def do_POST(self) -> None:
                with owner.lock:
                    owner.in_flight += 1
                    owner.max_in_flight = max(owner.max_in_flight, owner.in_flight)
                    self._counted = True
                try:
                    self._handle()
                finally:
                    self._leave()

            def _handle(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                fault = owner.next_fault()
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = None
                with owner.lock:
                    owner.requests.append(
                        {
                            "body": body,
                            "headers": {k.lower(): v for k, v in self.headers.items()},
                            "fault": fault,
                        }
                    )
                if not self.path.endswith("/chat/completions") or body is None:
                    self._send(404, b'{"error": {"message": "not found"}}')
                    return
                if fault == "timeout":
                    time.sleep(owner.timeout_sleep_s)
                elif fault == "429":
                    self._send(
                        429, b'{"error": "rate limited"}', {"Retry-After": owner.retry_after}
                    )
                    return
                elif fault in ("500", "503"):
                    echoed = self.headers.get("Authorization", "") + self.headers.get("api-key", "")
                    msg = json.dumps({"error": f"internal error; you sent {echoed}"})
                    self._send(int(fault), msg.encode())
                    return
                elif fault == "401":
                    echoed = self.headers.get("Authorization", "") + self.headers.get("api-key", "")
                    msg = json.dumps(
                        {"error": {"message": f"Incorrect API key provided: {echoed}"}}
                    )
                    self._send(401, msg.encode())
                    return
                elif fault == "malformed":
                    self._send(200, b'{"choices": [{"message": {"content": "trunc')
                    return
                prompt = body["messages"][-1]["content"]
                if body.get("stream"):
                    self._leave()
                    self._stream(owner.responder(prompt), body.get("model", ""))
                    return
                answer = {
                    "id": "chatcmpl-test",
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": body.get("model", ""),
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": owner.responder(prompt)},
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
                }
                self._send(200, json.dumps(answer).encode())

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), daemon=True
        )
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._server is not None and self._thread is not None
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
