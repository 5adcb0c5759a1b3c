"""OpenAI-compatible chat-completions backend (vLLM, Ollama, llama.cpp server, OpenAI, Azure v1).

Stdlib HTTP only. Temperature 0 and a fixed seed; a thread pool bounds concurrency; timeouts,
429, 408 and 5xx answers, dropped connections and malformed bodies are retried with
exponential backoff and jitter (``Retry-After`` is honoured, capped by ``backoff_max_s``).
After the last retry, or on any other HTTP error, the answer is ``None``: a long run goes on.
The API key is read from the environment variable *named* in params; it is sent only in the
request header and is redacted from every log line.
"""

from __future__ import annotations

import dataclasses
import email.utils
import http.client
import json
import logging
import os
import random
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from taco.config import LLMParams, OpenAIParams
from taco.llm.base import LLM

log = logging.getLogger(__name__)

RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


class _Secret:
    """Holds the API key; its repr never shows it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "_Secret('***')"


class _Retryable(Exception):
    """An attempt failed in a way worth retrying (``retry_after``: seconds the server asked)."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header (seconds or HTTP date); None if absent/invalid."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def parse_chat_response(body: bytes) -> str:
    """The first choice's message content; ValueError when the body is not that shape."""
    data = json.loads(body.decode("utf-8"))
    content = data["choices"][0]["message"]["content"]
    if not isinstance(content, str):
        raise ValueError("message content is not a string")
    return content


class OpenAILLM(LLM):
    """Greedy answers from a chat-completions endpoint; ``None`` for a prompt that never got one."""

    def __init__(
        self,
        *,
        base_url: str,
        model: str,
        api_key_env: str | None = "OPENAI_API_KEY",
        api_key_header: str = "authorization",
        timeout_s: float = 60.0,
        max_retries: int = 5,
        backoff_base_s: float = 1.0,
        backoff_max_s: float = 60.0,
        concurrency: int = 8,
        seed: int = 42,
        max_new_tokens: int = 32,
        tokenizer: str | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.base_url = base_url
        self.model = model
        self.api_key_header = api_key_header
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.concurrency = concurrency
        self.seed = seed
        self.max_new_tokens = max_new_tokens
        self.tokenizer_source = tokenizer
        self._tokenizer: Any = None
        self._sleep = sleep
        self._rng = random.Random(seed)
        self._rng_lock = threading.Lock()
        self.failures = 0
        self.retries = 0
        key = os.environ.get(api_key_env) if api_key_env else None
        if api_key_env and not key:
            log.info("env var %s is not set: requests carry no API key", api_key_env)
        self._key = _Secret(key) if key else None

    @classmethod
    def from_params(cls, params: LLMParams) -> OpenAILLM:
        """Build from the ``llm`` section: every ``llm.openai`` key is the constructor
        argument of the same name; model, seed and decoding length are shared ``llm`` keys."""
        endpoint = {
            f.name: getattr(params.openai, f.name) for f in dataclasses.fields(OpenAIParams)
        }
        return cls(
            model=params.model, seed=params.seed, max_new_tokens=params.max_new_tokens, **endpoint
        )

    def __repr__(self) -> str:
        return f"OpenAILLM(base_url={self.base_url!r}, model={self.model!r})"

    @property
    def identity(self) -> Mapping[str, Any]:
        return {
            "backend": "openai",
            "base_url": self.base_url,
            "model": self.model,
            "temperature": 0,
            "seed": self.seed,
        }

    def metrics(self) -> dict[str, float]:
        return {"llm/failures": float(self.failures), "llm/retries": float(self.retries)}

    # ------------------------------------------------------------------------------ calls

    def generate(
        self, prompts: Sequence[str], max_new_tokens: int | None = None
    ) -> list[str | None]:
        n = max_new_tokens or self.max_new_tokens
        if not prompts:
            return []
        workers = min(self.concurrency, len(prompts))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="taco-llm") as pool:
            return list(pool.map(lambda p: self._complete(p, n), prompts))

    def _redact(self, text: str) -> str:
        if self._key is not None and self._key.get():
            text = text.replace(self._key.get(), "***")
        return text

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._key is not None:
            if self.api_key_header == "api-key":
                headers["api-key"] = self._key.get()
            else:
                headers["Authorization"] = f"Bearer {self._key.get()}"
        return headers

    def _attempt(self, body: bytes) -> str:
        """One HTTP request: the answer; _Retryable, or ValueError for a final refusal (4xx)."""
        req = urllib.request.Request(self.url, data=body, headers=self._headers(), method="POST")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                payload = resp.read()
        except urllib.error.HTTPError as exc:
            detail = self._redact(exc.read(300).decode("utf-8", "replace").strip())
            retry_after = parse_retry_after(exc.headers.get("Retry-After") if exc.headers else None)
            exc.close()
            if exc.code in RETRY_STATUS or exc.code >= 500:
                raise _Retryable(f"HTTP {exc.code}", retry_after) from None
            raise ValueError(f"HTTP {exc.code}: {detail[:200]}") from None
        except (TimeoutError, urllib.error.URLError, http.client.HTTPException, OSError) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise _Retryable(f"{type(exc).__name__}: {self._redact(str(reason))[:200]}") from None
        try:
            return parse_chat_response(payload)
        except (ValueError, KeyError, IndexError, TypeError, UnicodeDecodeError):
            raise _Retryable("malformed response body") from None

    def _complete(self, prompt: str, max_new_tokens: int) -> str | None:
        body = json.dumps(
            {
                "model": self.model,
                "messages": [{"role": "user", "content": prompt}],
                "max_tokens": max_new_tokens,
                "temperature": 0,
                "seed": self.seed,
            }
        ).encode("utf-8")
        for attempt in range(self.max_retries + 1):
            try:
                return self._attempt(body).strip()
            except ValueError as exc:  # not worth retrying (400, 401, 404...)
                log.warning("LLM call failed, not retried: %s", self._redact(str(exc)))
                break
            except _Retryable as exc:
                if attempt == self.max_retries:
                    log.warning("LLM call failed after %d attempts: %s", attempt + 1, exc)
                    break
                delay = self._delay(attempt, exc.retry_after)
                log.info("LLM call: %s; retry %d in %.2f s", exc, attempt + 1, delay)
                with self._rng_lock:
                    self.retries += 1
                self._sleep(delay)
            except Exception as exc:  # a long run must never die on one call
                log.warning("LLM call failed unexpectedly: %s", self._redact(type(exc).__name__))
                break
        with self._rng_lock:
            self.failures += 1
        return None

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        """Retry-After when given, else exponential backoff with jitter; capped by backoff_max_s."""
        if retry_after is not None:
            return min(retry_after, self.backoff_max_s)
        cap = min(self.backoff_max_s, self.backoff_base_s * 2**attempt)
        with self._rng_lock:
            return cap / 2 + self._rng.uniform(0.0, cap / 2)

    # --------------------------------------------------------------------------- tokens

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Token counts with ``llm.openai.tokenizer`` (default: the embedded SmolLM2 tokenizer,
        an approximation of the endpoint's own tokenizer)."""
        if self._tokenizer is None:
            from taco.llm.embedded import load_tokenizer

            self._tokenizer = load_tokenizer(self.tokenizer_source)
        enc = self._tokenizer(list(texts), add_special_tokens=False)["input_ids"]
        return [len(ids) for ids in enc]
