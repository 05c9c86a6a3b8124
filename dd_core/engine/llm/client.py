"""One HTTP call to an OpenAI-compatible ``/chat/completions`` endpoint, with typed failures.

aiohttp rather than httpx: measured here, an httpx AsyncClient costs 2-3 ms of CPU per
request and slows down as concurrency grows (encode/httpx#3215), which caps one process
below 300 calls/s; aiohttp keeps up with 16-32 parallel requests at 50 ms latency.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp
import yarl

RETRYABLE_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}
RATE_HEADER, RATE_TOKENS_HEADER = "x-ratelimit-remaining-requests", "x-ratelimit-remaining-tokens"


@dataclass(frozen=True)
class Completion:
    content: str
    prompt_tokens: int
    completion_tokens: int


class CallFailed(Exception):
    """A request that did not produce a completion.

    ``code`` is the HTTP status, or "timeout", "network" (connection failed or cut) or
    "malformed" (a 200 whose body is not a completion).
    """

    def __init__(self, message: str, *, code: str, retryable: bool, status: int | None = None, retry_after: float | None = None):
        super().__init__(message)
        self.code = code
        self.status = status
        self.retryable = retryable
        self.retry_after = retry_after


def _retry_after(headers: Any) -> float | None:
    value = headers.get("Retry-After")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None  # an HTTP date: fall back to our own backoff


def _error_message(text: str) -> str:
    try:
        return str(json.loads(text)["error"]["message"])[:300]
    except (ValueError, KeyError, TypeError):
        return text[:300]


def http_failure(status: int, headers: Any, body: bytes, what: str = "") -> CallFailed:
    """A non-200 answer as a typed failure, quoting the server's message (never a header)."""
    return CallFailed(
        f"{what}HTTP {status}: {_error_message(body.decode('utf-8', 'replace'))}",
        code=str(status),
        status=status,
        retryable=status in RETRYABLE_STATUS,
        retry_after=_retry_after(headers),
    )


class ChatClient:
    """Posts chat-completion bodies to one endpoint through a shared connection pool."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str, api_key: str | None, timeout_s: float):
        self._session = session
        self._url = yarl.URL(base_url.rstrip("/") + "/chat/completions")  # parsed once, not per request
        self._headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {api_key}"} if api_key else {})}
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        #: Given the headers of every reply that carries ``x-ratelimit-*`` (429s included).
        self.on_rate_headers: Callable[[Mapping[str, str]], None] | None = None

    async def complete(self, payload: bytes) -> Completion:
        """POST an already-serialised JSON body (serialised once, for the cache key too)."""
        try:
            async with self._session.post(self._url, data=payload, headers=self._headers, timeout=self._timeout) as response:
                body = await response.read()
                if self.on_rate_headers is not None and (RATE_HEADER in response.headers or RATE_TOKENS_HEADER in response.headers):
                    self.on_rate_headers(response.headers)
                if response.status != 200:
                    raise http_failure(response.status, response.headers, body)
        except asyncio.TimeoutError as exc:
            raise CallFailed(f"no reply within {self._timeout.total:g} s", code="timeout", retryable=True) from exc
        except aiohttp.ClientError as exc:
            raise CallFailed(f"connection failed: {type(exc).__name__}: {exc}", code="network", retryable=True) from exc
        return _parse(body)


def _parse(body: bytes) -> Completion:
    try:
        data = json.loads(body)
        content = data["choices"][0]["message"]["content"]
        usage = data.get("usage") or {}
        if not isinstance(content, str):
            raise TypeError("content is not a string")
        return Completion(content, int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0)))
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise CallFailed(f"malformed completion body ({type(exc).__name__}: {exc}): {body[:200]!r}", code="malformed", retryable=True) from exc
