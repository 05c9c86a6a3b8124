"""One HTTP call to an OpenAI-compatible ``/chat/completions`` endpoint, with typed failures.

aiohttp rather than httpx: measured here, an httpx AsyncClient costs 2-3 ms of CPU per
request and slows down as concurrency grows (encode/httpx#3215), which caps one process
below 300 calls/s; aiohttp keeps up with 16-32 parallel requests at 50 ms latency.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import aiohttp
import yarl

from dd_core.engine.llm.replies import MAX_REPLY_BYTES, Completion, MalformedReply, parse_completion, parse_json
from dd_core.engine.llm.retry_policy import RETRYABLE_STATUS
from dd_core.redaction import scrub

__all__ = ["CallFailed", "ChatClient", "Completion"]

RATE_HEADER, RATE_TOKENS_HEADER = "x-ratelimit-remaining-requests", "x-ratelimit-remaining-tokens"


class CallFailed(Exception):
    """A request that did not produce a completion.

    ``code`` is the HTTP status, or "timeout", "network" (connection failed or cut) or
    "malformed" (a 200 whose body is not a completion).
    """

    def __init__(
        self, message: str, *, code: str, retryable: bool, status: int | None = None, retry_after: float | None = None
    ):
        super().__init__(scrub(message))  # servers may echo the key back: it never leaves this object
        self.code = code
        self.status = status
        self.retryable = retryable
        self.retry_after = retry_after


def _retry_after(headers: Any) -> float | None:
    value = headers.get("Retry-After")
    try:
        seconds = float(value) if value is not None else None
    except ValueError:
        return None  # an HTTP date: fall back to our own backoff
    return max(0.0, seconds) if seconds is not None and math.isfinite(seconds) else None


def error_message(body: bytes) -> str:
    try:
        return str(parse_json(body)["error"]["message"])[:300]
    except (MalformedReply, KeyError, TypeError, IndexError):
        return body[:300].decode("utf-8", "replace")


async def read_body(response: aiohttp.ClientResponse) -> bytes:
    """The whole body, or ``MalformedReply`` once it passes ``MAX_REPLY_BYTES`` (read no further)."""
    if response.content_length is not None:
        if response.content_length > MAX_REPLY_BYTES:
            raise MalformedReply(
                f"the body is {response.content_length:,} bytes, more than the {MAX_REPLY_BYTES:,} bytes a reply may have"
            )
        return await response.read()
    chunks, size = [], 0
    async for chunk in response.content.iter_chunked(1 << 16):
        size += len(chunk)
        if size > MAX_REPLY_BYTES:
            raise MalformedReply(f"the body is more than the {MAX_REPLY_BYTES:,} bytes a reply may have")
        chunks.append(chunk)
    return b"".join(chunks)


#: What can go wrong in one HTTP exchange besides its answer (see ``transport_failure``).
TRANSPORT_ERRORS = (MalformedReply, asyncio.TimeoutError, aiohttp.ClientError, OSError)


def transport_failure(exc: BaseException, timeout_s: float, what: str = "") -> CallFailed:
    """One of ``TRANSPORT_ERRORS`` (a reply too big or too deep, no reply in time, a connection
    that failed) as a retryable ``CallFailed`` (``what`` names the call in the message)."""
    if isinstance(exc, MalformedReply):
        return CallFailed(f"{what}malformed reply: {exc}", code="malformed", retryable=True)
    if isinstance(exc, asyncio.TimeoutError):
        return CallFailed(f"{what}no reply within {timeout_s:g} s", code="timeout", retryable=True)
    return CallFailed(f"{what}connection failed: {type(exc).__name__}: {exc}", code="network", retryable=True)


@contextmanager
def transport_failures(timeout_s: float, what: str = "") -> Iterator[None]:
    """``transport_failure`` around one HTTP exchange."""
    try:
        yield
    except TRANSPORT_ERRORS as exc:
        raise transport_failure(exc, timeout_s, what) from exc


def http_failure(status: int, headers: Any, body: bytes, what: str = "") -> CallFailed:
    """A non-200 answer as a typed failure, quoting the server's message (never a header)."""
    return CallFailed(
        f"{what}HTTP {status}: {error_message(body)}",
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
        self._headers = {
            "Content-Type": "application/json",
            **({"Authorization": f"Bearer {api_key}"} if api_key else {}),
        }
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        #: Given the headers of every reply that carries ``x-ratelimit-*`` (429s included).
        self.on_rate_headers: Callable[[Mapping[str, str]], None] | None = None

    async def complete(self, payload: bytes) -> Completion:
        """POST an already-serialised JSON body (serialised once, for the cache key too).

        The hottest path of a run: ``transport_failures`` and ``read_body`` written in place
        (a body of a known, allowed length is read at once), a coroutine and a context manager
        fewer per call."""
        try:
            async with self._session.post(
                self._url, data=payload, headers=self._headers, timeout=self._timeout
            ) as response:
                length = response.content_length
                body = (
                    await response.read()
                    if length is not None and length <= MAX_REPLY_BYTES
                    else await read_body(response)
                )
                headers = response.headers
                if self.on_rate_headers is not None and (RATE_HEADER in headers or RATE_TOKENS_HEADER in headers):
                    self.on_rate_headers(headers)
                if response.status != 200:
                    raise http_failure(response.status, headers, body)
        except TRANSPORT_ERRORS as exc:
            raise transport_failure(exc, self._timeout.total) from exc
        try:
            return parse_completion(body)
        except MalformedReply as exc:
            raise CallFailed(
                f"malformed completion body ({exc}): {body[:200]!r}", code="malformed", retryable=True
            ) from exc
