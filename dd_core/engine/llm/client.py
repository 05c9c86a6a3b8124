"""One HTTP call to a chat endpoint, with typed failures.

What differs between providers (the URL, the headers, the body sent for a payload, how a reply,
an error and rate-limit headers read) is a ``ChatDialect`` (see ``providers``); the default is
an OpenAI-compatible ``/chat/completions`` endpoint.

aiohttp rather than httpx: measured here, an httpx AsyncClient costs 2-3 ms of CPU per
request and slows down as concurrency grows (encode/httpx#3215), which caps one process
below 300 calls/s; aiohttp keeps up with 16-32 parallel requests at 50 ms latency.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import yarl

from dd_core.engine.llm.replies import MAX_REPLY_BYTES, Completion, MalformedReply, parse_completion, parse_json
from dd_core.engine.llm.retry_policy import RETRYABLE_STATUS
from dd_core.redaction import scrub

__all__ = ["CallFailed", "ChatClient", "ChatDialect", "Completion"]

RATE_HEADER, RATE_TOKENS_HEADER = "x-ratelimit-remaining-requests", "x-ratelimit-remaining-tokens"


class CallFailed(Exception):
    """A request that did not produce a completion.

    ``code`` is the HTTP status, or "timeout", "network" (connection failed or cut) or
    "malformed" (a 200 whose body is not a completion). ``throttled``: the server asked to slow
    down (a 429, or a provider's own overload answer such as Anthropic's 529).
    """

    def __init__(
        self,
        message: str,
        *,
        code: str,
        retryable: bool,
        status: int | None = None,
        retry_after: float | None = None,
        throttled: bool = False,
    ):
        super().__init__(scrub(message))  # servers may echo the key back: it never leaves this object
        self.code = code
        self.status = status
        self.retryable = retryable
        self.retry_after = retry_after
        self.throttled = throttled


def retry_after_s(headers: Any) -> float | None:
    """Seconds the server asks to wait: ``retry-after-ms`` (Azure, OpenAI), else ``Retry-After`` in
    seconds (an HTTP date: None, our own backoff then applies)."""
    for name, scale in (("retry-after-ms", 0.001), ("Retry-After", 1.0)):
        value = headers.get(name)
        try:
            seconds = float(value) * scale if value is not None else None
        except ValueError:
            continue
        if seconds is not None and math.isfinite(seconds):
            return max(0.0, seconds)
    return None


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


def should_retry(status: int, headers: Any) -> bool:
    """Whether a failed status is worth another attempt: the server's own ``x-should-retry``
    (OpenAI's and Anthropic's servers send it) when present, else the status."""
    verdict = headers.get("x-should-retry")
    if verdict in ("true", "false"):
        return verdict == "true"
    return status in RETRYABLE_STATUS


def http_failure(status: int, headers: Any, body: bytes, what: str = "") -> CallFailed:
    """A non-200 answer as a typed failure, quoting the server's message (never a header)."""
    return CallFailed(
        f"{what}HTTP {status}: {error_message(body)}",
        code=str(status),
        status=status,
        retryable=should_retry(status, headers),
        retry_after=retry_after_s(headers),
        throttled=status == 429,
    )


def openai_rate_headers(headers: Mapping[str, str]) -> Mapping[str, str] | None:
    """The reply's headers when they carry OpenAI's ``x-ratelimit-*`` (what ``RateLimiter`` reads)."""
    return headers if RATE_HEADER in headers or RATE_TOKENS_HEADER in headers else None


@dataclass(frozen=True)
class ChatDialect:
    """How one provider's chat endpoint is spoken (see ``providers``)."""

    url: str
    #: Authentication and protocol headers (the key lives here and nowhere else).
    headers: Mapping[str, str] = field(repr=False)
    #: The body sent for a payload; None: the payload itself (it is already the provider's body).
    wire: Callable[[bytes], bytes] | None = None
    #: A 200 answer's body as a ``Completion`` (``MalformedReply`` when it is not one).
    parse: Callable[[bytes], Completion] = parse_completion
    #: A non-200 answer as a ``CallFailed``: ``(status, headers, body)``.
    failure: Callable[[int, Any, bytes], CallFailed] = http_failure
    #: The reply's rate-limit headers in OpenAI's ``x-ratelimit-*`` vocabulary, or None without any.
    rate_headers: Callable[[Mapping[str, str]], Mapping[str, str] | None] = openai_rate_headers


class ChatClient:
    """Posts chat bodies to one endpoint through a shared connection pool."""

    def __init__(self, session: aiohttp.ClientSession, dialect: ChatDialect, timeout_s: float):
        self._session = session
        self._url = yarl.URL(dialect.url)  # parsed once, not per request
        self._headers = {"Content-Type": "application/json", **dialect.headers}
        self._wire = dialect.wire
        self._parse = dialect.parse
        self._failure = dialect.failure
        self._rate_headers = dialect.rate_headers
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        #: Given the rate-limit headers of every reply that carries some (429s included).
        self.on_rate_headers: Callable[[Mapping[str, str]], None] | None = None

    async def complete(self, payload: bytes) -> Completion:
        """POST an already-serialised JSON body (serialised once, for the cache key too).

        The hottest path of a run: ``transport_failures`` and ``read_body`` written in place
        (a body of a known, allowed length is read at once), a coroutine and a context manager
        fewer per call."""
        data = payload if self._wire is None else self._wire(payload)
        try:
            async with self._session.post(
                self._url, data=data, headers=self._headers, timeout=self._timeout
            ) as response:
                length = response.content_length
                body = (
                    await response.read()
                    if length is not None and length <= MAX_REPLY_BYTES
                    else await read_body(response)
                )
                headers = response.headers
                if self.on_rate_headers is not None:
                    rate = self._rate_headers(headers)
                    if rate is not None:
                        self.on_rate_headers(rate)
                if response.status != 200:
                    raise self._failure(response.status, headers, body)
        except TRANSPORT_ERRORS as exc:
            raise transport_failure(exc, self._timeout.total) from exc
        try:
            return self._parse(body)
        except MalformedReply as exc:
            raise CallFailed(
                f"malformed completion body ({exc}): {body[:200]!r}", code="malformed", retryable=True
            ) from exc
