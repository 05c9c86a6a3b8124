"""One HTTP call to a chat endpoint, with typed failures.

What differs between providers (the URL, the headers, the body sent for a payload, how a reply,
an error and rate-limit headers read) is a ``ChatDialect`` (see ``providers``); the default is
an OpenAI-compatible ``/chat/completions`` endpoint.

Streamed (the model's ``stream``) or not: a streamed request carries the provider's stream fields
on the wire only (OpenAI's ``"stream": true, "stream_options": {"include_usage": true}``,
Anthropic's ``"stream": true``: the body that keys the response cache is the same either way, so
switching changes no cache key), its events are assembled by the provider's ``StreamAssembler``
into the same ``Completion`` (usage and the finish or stop reason from the stream), and its
deadlines are a ``ReplyClock``'s (first event, silence between events, cap: see ``timeouts``).
Azure's replies are read whole, within ``timeout_s`` (see ``providers.azure``).

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

from dd_core.engine.llm.replies import (
    MAX_REPLY_BYTES,
    Completion,
    MalformedReply,
    StreamAssembler,
    StreamedCompletion,
    parse_completion,
    parse_json,
)
from dd_core.engine.llm.retry_policy import RETRYABLE_STATUS, THROTTLING_STATUS
from dd_core.engine.llm.sse import event_data
from dd_core.engine.llm.timeouts import SLOWEST_TOKEN_S, ReplyClock, Timeouts
from dd_core.redaction import scrub

__all__ = ["CallFailed", "ChatClient", "ChatDialect", "Completion"]

RATE_HEADER, RATE_TOKENS_HEADER = "x-ratelimit-remaining-requests", "x-ratelimit-remaining-tokens"


@dataclass(frozen=True)
class Abandoned:
    """A request given up on after it reached the server, which may have gone on writing its reply
    (and a provider billing it): after ``seconds``, with ``tokens_seen`` of it received (None:
    nothing could be seen, the reply was not streamed)."""

    seconds: float
    tokens_seen: int | None = None


class CallFailed(Exception):
    """A request that did not produce a completion.

    ``code`` is the HTTP status, or "connect_timeout" (no connection: nothing was sent),
    "timeout" (no reply, or not all of it, within its time), "stalled" (a streamed reply went
    silent), "network" (connection failed or cut) or "malformed" (a 200 whose body is not a
    completion). ``abandoned``: the request reached the server and was given up on. ``throttled``:
    the server asked to slow down (429, an overloaded server's 503, Anthropic's 529).
    """

    def __init__(
        self,
        message: str,
        *,
        code: str,
        retryable: bool,
        status: int | None = None,
        retry_after: float | None = None,
        abandoned: Abandoned | None = None,
        throttled: bool = False,
    ):
        super().__init__(scrub(message))  # servers may echo the key back: it never leaves this object
        self.code = code
        self.status = status
        self.retryable = retryable
        self.retry_after = retry_after
        self.abandoned = abandoned
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
#: Failures before the request left: nothing reached the server.
_NOT_SENT = (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError)


def transport_failure(exc: BaseException, timeouts: Timeouts, what: str = "", seconds: float = 0.0) -> CallFailed:
    """One of ``TRANSPORT_ERRORS`` (a reply too big or too deep, no connection or no reply in time,
    a connection that failed) as a retryable ``CallFailed`` (``what`` names the call in the
    message); one that may have reached the server is marked ``abandoned`` after ``seconds``."""
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return CallFailed(
            f"{what}no connection within {timeouts.connect_s:g} s (connect_timeout_s)",
            code="connect_timeout",
            retryable=True,
        )
    abandoned = None if isinstance(exc, _NOT_SENT) else Abandoned(seconds)
    if isinstance(exc, MalformedReply):
        return CallFailed(f"{what}malformed reply: {exc}", code="malformed", retryable=True)
    if isinstance(exc, asyncio.TimeoutError):
        return CallFailed(
            f"{what}no reply within {timeouts.first_byte_s:g} s (timeout_s)",
            code="timeout",
            retryable=True,
            abandoned=abandoned,
        )
    return CallFailed(
        f"{what}connection failed: {type(exc).__name__}: {exc}", code="network", retryable=True, abandoned=abandoned
    )


@contextmanager
def transport_failures(timeouts: Timeouts, what: str = "") -> Iterator[None]:
    """``transport_failure`` around one HTTP exchange."""
    try:
        yield
    except TRANSPORT_ERRORS as exc:
        raise transport_failure(exc, timeouts, what) from exc


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
        throttled=status in THROTTLING_STATUS,
    )


def openai_rate_headers(headers: Mapping[str, str]) -> Mapping[str, str] | None:
    """The reply's headers when they carry OpenAI's ``x-ratelimit-*`` (what ``RateLimiter`` reads)."""
    return headers if RATE_HEADER in headers or RATE_TOKENS_HEADER in headers else None


#: What a streamed OpenAI-compatible request adds to its body, on the wire only.
OPENAI_STREAM_FIELDS = b',"stream":true,"stream_options":{"include_usage":true}}'


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
    #: What a streamed request's body ends with instead of its closing brace; None: the provider's
    #: replies are always read whole.
    stream_fields: bytes | None = None
    #: A new assembler of one streamed reply's events (OpenAI's ``chat.completion.chunk`` by default).
    stream_reply: Callable[[], StreamAssembler] = StreamedCompletion


class ChatClient:
    """Posts chat bodies to one endpoint through a shared connection pool."""

    def __init__(
        self, session: aiohttp.ClientSession, dialect: ChatDialect, timeouts: Timeouts, *, stream: bool = False
    ):
        self._session = session
        self._url = yarl.URL(dialect.url)  # parsed once, not per request
        self._headers = {"Content-Type": "application/json", **dialect.headers}
        self._wire = dialect.wire
        self._parse = dialect.parse
        self._failure = dialect.failure
        self._rate_headers = dialect.rate_headers
        self._stream_fields = dialect.stream_fields
        self._stream_reply = dialect.stream_reply
        self.timeouts = timeouts
        #: Whether the provider's stream is one dd reads (Azure's replies are read whole).
        self.can_stream = dialect.stream_fields is not None
        #: Streamed when asked and the provider's stream is one dd reads.
        self.stream = stream and self.can_stream
        self._client_timeout = timeouts.client_timeout(streaming=self.stream)
        #: Given the rate-limit headers of every reply that carries some (429s included).
        self.on_rate_headers: Callable[[Mapping[str, str]], None] | None = None

    async def complete(self, payload: bytes, timeouts: Timeouts | None = None) -> Completion:
        """POST an already-serialised JSON body (serialised once, for the cache key too), within
        ``timeouts`` (the client's own by default)."""
        if self.stream:
            return await self._streamed(payload, timeouts or self.timeouts)
        return await self._whole(payload, timeouts)

    def _check(self, response: aiohttp.ClientResponse) -> None:
        if self.on_rate_headers is not None:
            rate = self._rate_headers(response.headers)
            if rate is not None:
                self.on_rate_headers(rate)

    async def _whole(self, payload: bytes, timeouts: Timeouts | None) -> Completion:
        """The hottest path of a run: ``transport_failures`` and ``read_body`` written in place
        (a body of a known, allowed length is read at once), a coroutine and a context manager
        fewer per call."""
        client_timeout = self._client_timeout if timeouts is None else timeouts.client_timeout(streaming=False)
        data = payload if self._wire is None else self._wire(payload)
        started = asyncio.get_running_loop().time()
        try:
            async with self._session.post(
                self._url, data=data, headers=self._headers, timeout=client_timeout
            ) as response:
                length = response.content_length
                body = (
                    await response.read()
                    if length is not None and length <= MAX_REPLY_BYTES
                    else await read_body(response)
                )
                self._check(response)
                if response.status != 200:
                    raise self._failure(response.status, response.headers, body)
        except TRANSPORT_ERRORS as exc:
            seconds = asyncio.get_running_loop().time() - started
            raise transport_failure(exc, timeouts or self.timeouts, seconds=seconds) from exc
        return self._completion(body)

    async def _streamed(self, payload: bytes, timeouts: Timeouts) -> Completion:
        clock = ReplyClock(timeouts)
        reply = self._stream_reply()
        data = payload if self._wire is None else self._wire(payload)
        try:
            async with clock.context:
                async with self._session.post(
                    self._url,
                    data=data[:-1] + self._stream_fields,
                    headers=self._headers,
                    timeout=timeouts.client_timeout(streaming=True),
                ) as response:
                    self._check(response)
                    if response.status != 200:
                        raise self._failure(response.status, response.headers, await read_body(response))
                    if response.content_type != "text/event-stream":
                        return self._completion(await read_body(response))  # a server that does not stream
                    async for event in event_data(response, clock):
                        if reply.add(event):
                            break
            return reply.completion(prompt_estimate(payload))
        except CallFailed:
            raise
        except TRANSPORT_ERRORS as exc:
            raise stream_failure(exc, clock, timeouts, reply.seen) from exc

    def _completion(self, body: bytes) -> Completion:
        try:
            return self._parse(body)
        except MalformedReply as exc:
            raise CallFailed(
                f"malformed completion body ({exc}): {body[:200]!r}", code="malformed", retryable=True
            ) from exc


def prompt_estimate(payload: bytes) -> int:
    """Prompt tokens of a body when the server does not say: four bytes a token."""
    return len(payload) // 4


def stream_failure(exc: BaseException, clock: ReplyClock, timeouts: Timeouts, seen: int) -> CallFailed:
    """What stopped a streamed reply, by the deadline that ran out (or ``transport_failure``)."""
    seconds = clock.elapsed()
    if isinstance(exc, asyncio.TimeoutError) and not isinstance(exc, aiohttp.ClientError):
        abandoned = Abandoned(seconds, seen)
        if clock.phase == "first_byte":
            message = f"no reply began within {timeouts.first_byte_s:g} s (timeout_s)"
            return CallFailed(message, code="timeout", retryable=True, abandoned=abandoned)
        if clock.phase == "cap":
            message = (
                f"the reply was not over within {timeouts.cap_s():g} s (timeout_s plus {SLOWEST_TOKEN_S:g} s per max_tokens), "
                f"{seen:,} chunks in"
            )
            return CallFailed(message, code="timeout", retryable=True, abandoned=abandoned)
        message = f"the streamed reply went silent for {timeouts.idle_s:g} s (idle_timeout_s), {seen:,} chunks in"
        return CallFailed(message, code="stalled", retryable=True, abandoned=abandoned)
    failure = transport_failure(exc, timeouts, seconds=seconds)
    if failure.abandoned is not None:
        failure.abandoned = Abandoned(seconds, seen)
    return failure
