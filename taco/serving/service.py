"""The BentoML service: POST /compress (adaptive batching), POST /compress_llmlingua, the
compressing proxy POST /v1/chat/completions, GET /model and taco's Prometheus series.

Thin by design: every compression decision is taco.compress's; this module turns HTTP into
calls to it, and client mistakes into 4xx answers that name the problem. Settings are the
``serve`` section of the params file (``$TACO_PARAMS``, default ``params.yaml`` in the working
directory: a bento carries the resolved params it was built with). The model is the bento
argument ``model`` (a BentoML model tag; ``taco package`` sets it).

Serve with ``taco serve`` (``make serve``), or ``bentoml serve <bento tag>``, or from source:
``bentoml serve taco.serving.service:TacoCompressor --arg model=taco-code:latest``.
"""

from __future__ import annotations

import functools
import hmac
import json
import logging
import math
import os
import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from pathlib import Path
from typing import Annotated, Any, Literal

import anyio
import bentoml
import httpx
from fastapi import FastAPI
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    WithJsonSchema,
    WrapSerializer,
    WrapValidator,
    field_validator,
    model_validator,
)
from starlette.background import BackgroundTask
from starlette.responses import JSONResponse, Response, StreamingResponse

from taco.compress.chat import ChatPolicy, compress_chat, join_question
from taco.compress.compressor import CompressionRequest, CompressionResult, Compressor
from taco.compress.selection import HFTokenCounter, check_budget_args
from taco.config import ConfigError, load_params
from taco.layout import BUDGET_TOKENIZER

log = logging.getLogger(__name__)

PARAMS = load_params(os.environ.get("TACO_PARAMS", "params.yaml"))
SERVE = PARAMS.serve
FALLBACK_RATE = 0.5  # when neither the request, serve.default_rate nor the model gives one
#: Routes behind the API key and the request-size limit (the rest: probes, metrics, docs).
API_ROUTES = ("/compress", "/compress_llmlingua", "/v1/chat/completions", "/model")
#: Upstream response headers not passed back (hop-by-hop, or recomputed here).
HOP_HEADERS = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "content-length", "content-encoding"}
)
PROXIED_HEADER = b"x-taco-model"  # on every proxied answer: never rewritten
UPSTREAM_KEY_HEADERS = frozenset({"authorization", "api-key"})
Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class Arguments(BaseModel):
    """Bento arguments (``--arg model=TAG`` of ``bentoml build``/``bentoml serve``)."""

    model: str = f"{PARAMS.package.name}-{PARAMS.base.task}:latest"


ARGS = bentoml.use_arguments(Arguments)


# ------------------------------------------------------------------------------ schemas

Text = Annotated[str, Field(max_length=SERVE.max_prompt_chars)]


def _budget(rate: float | None, target_tokens: int | None) -> None:
    """Budget fields checked by taco.compress's own rule (a ValueError names the range)."""
    if rate is not None or target_tokens is not None:
        try:
            check_budget_args(rate, target_tokens)
        except TypeError as exc:
            raise ValueError(str(exc)) from None


class CompressRequest(BaseModel):
    """One text to compress: ``prompt``, or ``context`` with an optional ``question`` (read by
    the encoder, never compressed, appended verbatim after a blank line)."""

    model_config = ConfigDict(extra="forbid")

    prompt: Text | None = Field(None, description="the text to compress (or use context)")
    context: Text | None = Field(None, description="the text to compress, with a question")
    question: Text = Field("", description="read by the encoder, returned verbatim")
    rate: float | None = Field(
        None,
        strict=True,
        description="fraction of tokens kept, in (0, 1]; default: the model's recommended rate",
    )
    target_tokens: int | None = Field(None, strict=True, description="tokens kept, >= 0")
    force_tokens: list[Annotated[str, Field(min_length=1, max_length=100)]] = Field(
        ["\n"], max_length=100, description='words always kept ("\\n" keeps line breaks)'
    )
    keep_digits: bool = Field(False, strict=True, description="always keep words with digits")
    unit: Literal["word", "sentence", "line"] | None = Field(
        None, description="what the budget keeps whole (default: the model's)"
    )
    _single: bool = PrivateAttr(False)

    @model_validator(mode="after")
    def _one_text_and_a_budget(self) -> CompressRequest:
        if (self.prompt is None) == (self.context is None):
            raise ValueError("give exactly one of prompt or context")
        _budget(self.rate, self.target_tokens)
        return self

    def job(self, default_rate: float) -> CompressionRequest:
        """The taco.compress request (the default rate when no budget is given)."""
        text = self.prompt if self.prompt is not None else self.context
        assert text is not None
        rate = self.rate
        if rate is None and self.target_tokens is None:
            rate = default_rate
        return CompressionRequest(
            text,
            rate=rate,
            target_tokens=self.target_tokens,
            force_tokens=tuple(self.force_tokens),
            keep_digits=self.keep_digits,
            question=self.question,
            unit=self.unit,
        )


class CompressResponse(BaseModel):
    """A compression: ``rate`` = compressed/origin tokens (of the context, the budget's
    units), ``ratio`` = origin/compressed (null when nothing is kept)."""

    compressed_prompt: str
    origin_tokens: int
    compressed_tokens: int
    rate: float
    ratio: float | None
    model: str
    _single: bool = PrivateAttr(False)


def _one_or_many(value: Any, handler: Callable[[Any], list[CompressRequest]]) -> Any:
    """A JSON object is one request (answered with one object), a list is a batch."""
    if isinstance(value, dict):
        request = CompressRequest.model_validate(value)
        request._single = True
        return [request]
    return handler(value)


def _unwrap_single(value: list[CompressResponse], handler: Callable[[Any], Any]) -> Any:
    out = handler(value)
    return out[0] if len(value) == 1 and value[0]._single else out


def _object_or_list(model: type[BaseModel], max_items: int | None = None) -> WithJsonSchema:
    one = model.model_json_schema()
    many: dict[str, Any] = {"type": "array", "items": one}
    if max_items is not None:
        many["maxItems"] = max_items
    return WithJsonSchema({"anyOf": [one, many]})


CompressRequests = Annotated[
    list[CompressRequest],
    Field(max_length=SERVE.max_batch_items),
    WrapValidator(_one_or_many),
    _object_or_list(CompressRequest, SERVE.max_batch_items),
]
CompressResponses = Annotated[
    list[CompressResponse],
    WrapSerializer(_unwrap_single),
    _object_or_list(CompressResponse),
]


class LLMLinguaRequest(BaseModel):
    """LLMLingua's ``compress_prompt`` arguments (its context-level options are accepted
    and have no effect, see ``Compressor.compress_prompt``; unknown ones get 422)."""

    model_config = ConfigDict(extra="allow")

    context: Text | list[Text] = Field(description="a text, or texts under one shared budget")
    rate: float | None = Field(None, strict=True, description="(0, 1]; default: recommended")
    target_token: int = Field(-1, strict=True, description="tokens kept; -1 = use rate")
    force_tokens: list[Annotated[str, Field(min_length=1, max_length=100)]] = Field(
        [], max_length=100
    )
    force_reserve_digit: bool = Field(False, strict=True)
    question: Text = ""
    return_word_label: bool = Field(False, strict=True)
    word_sep: str = Field("\t\t|\t\t", min_length=1, max_length=100)
    label_sep: str = Field(" ", min_length=1, max_length=100)
    token_to_word: Literal["mean", "first"] = "mean"
    drop_consecutive: bool = Field(False, strict=True)

    @model_validator(mode="after")
    def _check_budget(self) -> LLMLinguaRequest:
        _budget(self.rate, None if self.target_token == -1 else self.target_token)
        return self


class ProxyOptions(BaseModel):
    """A chat request's ``taco`` field: overrides of ``serve.proxy`` for this request."""

    model_config = ConfigDict(extra="forbid")

    rate: float | None = Field(None, strict=True, description="fraction of tokens kept")
    roles: list[Literal["system", "developer", "user", "assistant", "tool"]] | None = None
    min_tokens: int | None = Field(None, ge=0, strict=True)
    keep_question: bool | None = None

    @field_validator("rate")
    @classmethod
    def _rate(cls, rate: float | None) -> float | None:
        _budget(rate, None)
        return rate


class ChatRequest(BaseModel):
    """An OpenAI chat-completions request; every field but ``taco`` is forwarded unchanged.
    ``taco``: false = no compression, or ``ProxyOptions``."""

    model_config = ConfigDict(extra="allow")

    messages: list[dict[str, Any]] = Field(min_length=1)
    stream: bool = False
    taco: ProxyOptions | Literal[False] | None = None


# ------------------------------------------------------------------------------ metrics


@functools.cache
def metrics() -> Any:
    """taco's Prometheus series, created on first use inside a worker (after BentoML has
    set ``PROMETHEUS_MULTIPROC_DIR``, so /metrics aggregates every worker)."""
    import types

    import prometheus_client as prom

    rate_buckets = [i / 20 for i in range(1, 21)]
    deviation = [-0.5, -0.2, -0.1, -0.05, -0.02, -0.01, 0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5]
    return types.SimpleNamespace(
        requests=prom.Counter(
            "taco_requests", "HTTP requests to taco's routes", ["endpoint", "status"]
        ),
        tokens_in=prom.Counter("taco_tokens_in", "tokens before compression", ["endpoint"]),
        tokens_out=prom.Counter("taco_tokens_out", "tokens after compression", ["endpoint"]),
        achieved=prom.Histogram(
            "taco_achieved_rate", "compressed/origin tokens", ["endpoint"], buckets=rate_buckets
        ),
        deviation=prom.Histogram(
            "taco_rate_deviation",
            "achieved minus requested rate",
            ["endpoint"],
            buckets=deviation,
        ),
        seconds=prom.Histogram(
            "taco_compression_seconds", "compression latency (its encoder batch)", ["endpoint"]
        ),
    )


def observe(endpoint: str, result: CompressionResult, requested: float, seconds: float) -> None:
    """Record one compression: tokens in/out, achieved rate and its deviation, latency."""
    m = metrics()
    m.tokens_in.labels(endpoint).inc(result.origin_tokens)
    m.tokens_out.labels(endpoint).inc(result.compressed_tokens)
    m.seconds.labels(endpoint).observe(seconds)
    if result.origin_tokens:
        m.achieved.labels(endpoint).observe(result.rate)
        m.deviation.labels(endpoint).observe(result.rate - requested)


def requested_rate(job: CompressionRequest, result: CompressionResult) -> float:
    """The rate a request asked for (a token target as a share of its origin tokens)."""
    if job.rate is not None:
        return job.rate
    return min(1.0, (job.target_tokens or 0) / max(result.origin_tokens, 1))


# --------------------------------------------------------------------------- HTTP guard


def error_response(status: int, message: str, **extra: Any) -> JSONResponse:
    """A JSON error ``{"error": message, ...}`` with ``status``."""
    return JSONResponse({"error": message, **extra}, status_code=status)


def validation_message(detail: list[dict[str, Any]]) -> str:
    """Pydantic errors as one line: ``field: message; ...`` (``[i]`` = item i of a list)."""
    parts = []
    for err in detail:
        loc = [p for p in err.get("loc", []) if p != "root"]
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        parts.append(f"{where}: {msg}" if where else msg)
    return "; ".join(parts)


def _api_key() -> str | None:
    name = SERVE.api_key_env
    if name is None:
        return None
    key = os.environ.get(name)
    if not key:
        raise ConfigError(
            f"serve.api_key_env names {name}, which is not set: set it, or serve.api_key_env: null"
        )
    return key


class RequestGuard:
    """ASGI middleware on ``API_ROUTES``: API key (401), request size (413), JSON syntax
    (400), BentoML's 400 for invalid fields turned into 422 naming them; counts requests."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.key = _api_key()
        self.max_bytes = SERVE.max_request_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in API_ROUTES:
            await self.app(scope, receive, send)
            return
        status = 500
        endpoint = scope["path"]

        async def reply(response: Response) -> None:
            await response(scope, receive, counted)

        async def counted(message: MutableMapping[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            refusal, body = await self._check(scope, receive)
            if refusal is not None:
                await reply(refusal)
            else:
                await self.app(scope, _replay(body), _unprocessable(counted))
        finally:
            metrics().requests.labels(endpoint, str(status)).inc()

    async def _check(self, scope: Scope, receive: Receive) -> tuple[Response | None, bytes]:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if self.key is not None and not _authorised(headers, self.key):
            return error_response(
                401, "missing or wrong API key: send Authorization: Bearer <key> or x-api-key"
            ), b""
        limit = f"serve.max_request_bytes = {self.max_bytes}"
        too_large = error_response(413, f"request body larger than {limit}")
        if int(headers.get("content-length") or 0) > self.max_bytes:
            return too_large, b""
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                return too_large, b""
            chunks.append(chunk)
            if not message.get("more_body"):
                break
        body = b"".join(chunks)
        if scope["method"] == "POST":
            try:
                json.loads(body)
            except ValueError as exc:
                return error_response(400, f"request body is not valid JSON: {exc}"), body
        return None, body


def _authorised(headers: dict[str, str], key: str) -> bool:
    given = headers.get("x-api-key") or headers.get("authorization", "").removeprefix("Bearer ")
    return hmac.compare_digest(given.encode(), key.encode())


def _replay(body: bytes) -> Receive:
    """A ``receive`` that hands the already-read ``body`` to the app."""
    sent = False

    async def receive() -> MutableMapping[str, Any]:
        nonlocal sent
        if sent:
            await anyio.sleep_forever()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


def _unprocessable(send: Send) -> Send:
    """Wrap ``send``: BentoML's 400 for invalid fields becomes 422 with a one-line error."""
    held: MutableMapping[str, Any] | None = None
    parts: list[bytes] = []

    async def wrapped(message: MutableMapping[str, Any]) -> None:
        nonlocal held
        if (
            message["type"] == "http.response.start"
            and message["status"] == 400
            and not any(k.lower() == PROXIED_HEADER for k, _ in message["headers"])
        ):
            held = message
            return
        if held is None or message["type"] != "http.response.body":
            await send(message)
            return
        parts.append(message.get("body", b""))
        if message.get("more_body"):
            return
        status, body = 400, b"".join(parts)
        try:
            data = json.loads(body)
        except ValueError:
            data = None
        if isinstance(data, dict) and isinstance(data.get("detail"), list):
            status = 422
            data["error"] = validation_message(data["detail"])
            body = json.dumps(data).encode()
        headers = [(k, v) for k, v in held["headers"] if k.lower() != b"content-length"]
        headers.append((b"content-length", str(len(body)).encode()))
        await send({**held, "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return wrapped


# ------------------------------------------------------------------------------ service

info_app = FastAPI(title="taco model info", openapi_url=None, docs_url=None, redoc_url=None)


@bentoml.asgi_app(info_app, path="/")
@bentoml.service(
    name="taco",
    workers=SERVE.workers,
    traffic={"timeout": SERVE.timeout_s},
)
class TacoCompressor:
    """Task-aware prompt compression (TACO-RL) with a trained, evaluated model."""

    model = bentoml.models.BentoModel(ARGS.model)

    def __init__(self) -> None:
        info = self.model.info
        self.tag = str(self.model.tag)
        budget_tokenizer = Path(self.model.path) / BUDGET_TOKENIZER
        counter = None
        if budget_tokenizer.is_dir():  # rates in the target LLM's tokens, as evaluated
            from transformers import AutoTokenizer

            counter = HFTokenCounter(AutoTokenizer.from_pretrained(str(budget_tokenizer)))
        self.compressor = Compressor.from_pretrained(
            self.model.path, device=SERVE.device, dtype=SERVE.dtype, token_counter=counter
        )
        recommended = info.metadata.get("recommended_rate")
        self.default_rate = float(SERVE.default_rate or recommended or FALLBACK_RATE)
        self.info = {
            "tag": self.tag,
            "stage": info.labels.get("stage"),
            "task": info.labels.get("task"),
            "metrics": info.metadata.get("metrics", {}),
            "data_version": info.metadata.get("data_version"),
            "recommended_rate": recommended,
            "default_rate": self.default_rate,
            "budget_tokens": "llm" if counter is not None else "encoder",
            "gate_passed": info.metadata.get("gate_passed"),
            "git_commit": info.metadata.get("git_commit"),
            "created": info.creation_time.isoformat(),
        }
        upstream = SERVE.upstream
        self.upstream_url = upstream.base_url.rstrip("/") + "/chat/completions"
        self.upstream_key = os.environ.get(upstream.api_key_env or "") or None
        self.http = httpx.AsyncClient(timeout=httpx.Timeout(upstream.timeout_s))
        metrics()
        log.info("serving %s (default rate %.3g)", self.tag, self.default_rate)

    @bentoml.api(
        batchable=True,
        max_batch_size=SERVE.batch_max_size,
        max_latency_ms=SERVE.batch_max_latency_ms,
    )
    def compress(self, requests: CompressRequests, /) -> CompressResponses:
        """Compress one request (a JSON object) or a list of them. Concurrent requests are
        merged by BentoML's adaptive batching into one encoder pass; each result equals
        compressing that request alone."""
        jobs = [r.job(self.default_rate) for r in requests]
        started = time.perf_counter()
        results = self.compressor.compress_batch(jobs)
        seconds = time.perf_counter() - started
        out = []
        for request, job, res in zip(requests, jobs, results, strict=True):
            observe("/compress", res, requested_rate(job, res), seconds)
            response = CompressResponse(
                compressed_prompt=join_question(res.compressed_prompt, request.question),
                origin_tokens=res.origin_tokens,
                compressed_tokens=res.compressed_tokens,
                rate=res.rate,
                ratio=None if math.isinf(res.ratio) else res.ratio,
                model=self.tag,
            )
            response._single = request._single
            out.append(response)
        return out

    @bentoml.api
    def compress_llmlingua(self, request: LLMLinguaRequest, /) -> dict[str, Any]:
        """Drop-in for LLMLingua-2's ``compress_prompt``: its argument names and result keys."""
        fields = request.model_dump()
        if fields["rate"] is None and fields["target_token"] == -1:
            fields["rate"] = self.default_rate
        started = time.perf_counter()
        try:
            result = self.compressor.compress_prompt(**fields)
        except (TypeError, ValueError) as exc:
            return error_response(422, str(exc))
        origin, kept = result["origin_tokens"], result["compressed_tokens"]
        achieved = CompressionResult.build("", origin, kept)
        target = None if fields["target_token"] == -1 else fields["target_token"]
        job = CompressionRequest("", rate=fields["rate"], target_tokens=target)
        seconds = time.perf_counter() - started
        observe("/compress_llmlingua", achieved, requested_rate(job, achieved), seconds)
        return result

    @bentoml.api(route="/v1/chat/completions")
    async def chat_completions(
        self, request: ChatRequest, /, ctx: bentoml.Context
    ) -> dict[str, Any]:
        """OpenAI-compatible chat completions through the compressor: the chosen messages
        are compressed (``serve.proxy``, or the request's ``taco`` field), the request is
        forwarded otherwise unchanged to ``serve.upstream``, and its answer comes back as
        it is (streamed chunk by chunk with ``"stream": true``; errors with their status).
        Headers ``x-taco-origin-tokens``/``x-taco-compressed-tokens`` count the compressed
        texts before and after."""
        body = request.model_dump(exclude={"taco"}, exclude_unset=True)
        headers = {PROXIED_HEADER.decode(): self.tag}
        if request.taco is not False:
            policy = self._policy(request.taco)
            started = time.perf_counter()
            chat = await anyio.to_thread.run_sync(
                compress_chat, self.compressor, request.messages, policy
            )
            seconds = time.perf_counter() - started
            for res in chat.results:
                observe("/v1/chat/completions", res, policy.rate, seconds)
            body["messages"] = chat.messages
            headers.update(
                {
                    "x-taco-origin-tokens": str(chat.origin_tokens),
                    "x-taco-compressed-tokens": str(chat.compressed_tokens),
                    "x-taco-compressed-texts": str(chat.compressed_texts),
                }
            )
        response = await self._forward(body, headers, ctx.request.headers)
        ctx.response.status_code = response.status_code  # BentoML applies the context's status
        return response

    def _policy(self, options: ProxyOptions | None) -> ChatPolicy:
        p = SERVE.proxy
        o = options or ProxyOptions()
        return ChatPolicy(
            rate=o.rate or p.rate or self.default_rate,
            roles=tuple(o.roles) if o.roles is not None else p.roles,
            min_tokens=o.min_tokens if o.min_tokens is not None else p.min_tokens,
            keep_question=o.keep_question if o.keep_question is not None else p.keep_question,
        )

    async def _forward(
        self, body: dict[str, Any], headers: dict[str, str], client: Mapping[str, str]
    ) -> Response:
        """POST ``body`` upstream; its answer (or a 502/504 naming the upstream) as is. The
        upstream key is ``serve.upstream.api_key_env``'s; without one, the client's own
        key headers are forwarded (unless they carry this service's key)."""
        out = {"content-type": "application/json", "accept-encoding": "identity"}
        upstream = SERVE.upstream
        if self.upstream_key:
            value = self.upstream_key
            if upstream.api_key_header == "authorization":
                value = f"Bearer {value}"
            out[upstream.api_key_header] = value
        elif SERVE.api_key_env is None:
            out.update({k: v for k, v in client.items() if k.lower() in UPSTREAM_KEY_HEADERS})
        req = self.http.build_request(
            "POST", self.upstream_url, content=json.dumps(body).encode(), headers=out
        )
        try:
            resp = await self.http.send(req, stream=True)
        except httpx.TimeoutException:
            return error_response(
                504, f"upstream {self.upstream_url} gave no answer in {upstream.timeout_s} s"
            )
        except httpx.HTTPError as exc:
            return error_response(502, f"upstream {self.upstream_url} unreachable: {exc}")
        passed = {k: v for k, v in resp.headers.items() if k.lower() not in HOP_HEADERS}
        passed.update(headers)
        if body.get("stream") and resp.status_code == 200:
            return StreamingResponse(
                resp.aiter_raw(), headers=passed, background=BackgroundTask(resp.aclose)
            )
        try:
            content = await resp.aread()
        except httpx.HTTPError as exc:
            return error_response(502, f"upstream {self.upstream_url} broke off: {exc}")
        finally:
            await resp.aclose()
        return Response(content, status_code=resp.status_code, headers=passed)

    @info_app.get("/model")
    def model_info(self) -> dict[str, Any]:
        """The served model: tag, stage, task, metrics, data version, recommended rate."""
        return self.info


TacoCompressor.add_asgi_middleware(RequestGuard)
