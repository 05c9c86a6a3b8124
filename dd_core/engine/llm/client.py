"""One HTTP call to an OpenAI-compatible ``/chat/completions`` endpoint, with typed failures.

Streamed (``stream: true``, the model's default) or not: a streamed request carries ``"stream":
true, "stream_options": {"include_usage": true}`` on the wire only (the body that keys the response
cache is the same either way, so switching changes no cache key), its chunks are assembled into
the same ``Completion`` (usage and ``finish_reason`` from the stream), and its deadlines are a
``ReplyClock``'s (first chunk, silence between chunks, cap: see ``timeouts``).

aiohttp rather than httpx: measured here, an httpx AsyncClient costs 2-3 ms of CPU per
request and slows down as concurrency grows (encode/httpx#3215), which caps one process
below 300 calls/s; aiohttp keeps up with 16-32 parallel requests at 50 ms latency.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
import yarl

from dd_core.engine.llm.replies import (
    MAX_REPLY_BYTES,
    Completion,
    MalformedReply,
    StreamedCompletion,
    parse_completion,
    parse_json,
)
from dd_core.engine.llm.retry_policy import RETRYABLE_STATUS
from dd_core.engine.llm.sse import event_data
from dd_core.engine.llm.timeouts import SLOWEST_TOKEN_S, ReplyClock, Timeouts
from dd_core.redaction import scrub

__all__ = ["CallFailed", "ChatClient", "Completion"]

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
    completion). ``abandoned``: the request reached the server and was given up on.
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
    ):
        super().__init__(scrub(message))  # servers may echo the key back: it never leaves this object
        self.code = code
        self.status = status
        self.retryable = retryable
        self.retry_after = retry_after
        self.abandoned = abandoned


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


def http_failure(status: int, headers: Any, body: bytes, what: str = "") -> CallFailed:
    """A non-200 answer as a typed failure, quoting the server's message (never a header)."""
    return CallFailed(
        f"{what}HTTP {status}: {error_message(body)}",
        code=str(status),
        status=status,
        retryable=status in RETRYABLE_STATUS,
        retry_after=_retry_after(headers),
    )


#: What a streamed request adds to its body, on the wire only.
STREAM_FIELDS = b',"stream":true,"stream_options":{"include_usage":true}}'


class ChatClient:
    """Posts chat-completion bodies to one endpoint through a shared connection pool."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        api_key: str | None,
        timeouts: Timeouts,
        *,
        stream: bool = False,
    ):
        self._session = session
        self._url = yarl.URL(base_url.rstrip("/") + "/chat/completions")  # parsed once, not per request
        self._headers = {
            "Content-Type": "application/json",
            **({"Authorization": f"Bearer {api_key}"} if api_key else {}),
        }
        self.timeouts = timeouts
        self.stream = stream
        self._client_timeout = timeouts.client_timeout(streaming=stream)
        #: Given the headers of every reply that carries ``x-ratelimit-*`` (429s included).
        self.on_rate_headers: Callable[[Mapping[str, str]], None] | None = None

    async def complete(self, payload: bytes, timeouts: Timeouts | None = None) -> Completion:
        """POST an already-serialised JSON body (serialised once, for the cache key too), within
        ``timeouts`` (the client's own by default)."""
        if self.stream:
            return await self._streamed(payload, timeouts or self.timeouts)
        return await self._whole(payload, timeouts)

    def _check(self, response: aiohttp.ClientResponse) -> None:
        headers = response.headers
        if self.on_rate_headers is not None and (RATE_HEADER in headers or RATE_TOKENS_HEADER in headers):
            self.on_rate_headers(headers)

    async def _whole(self, payload: bytes, timeouts: Timeouts | None) -> Completion:
        """The hottest path of a run: ``transport_failures`` and ``read_body`` written in place
        (a body of a known, allowed length is read at once), a coroutine and a context manager
        fewer per call."""
        client_timeout = self._client_timeout if timeouts is None else timeouts.client_timeout(streaming=False)
        started = asyncio.get_running_loop().time()
        try:
            async with self._session.post(
                self._url, data=payload, headers=self._headers, timeout=client_timeout
            ) as response:
                length = response.content_length
                body = (
                    await response.read()
                    if length is not None and length <= MAX_REPLY_BYTES
                    else await read_body(response)
                )
                self._check(response)
                if response.status != 200:
                    raise http_failure(response.status, response.headers, body)
        except TRANSPORT_ERRORS as exc:
            seconds = asyncio.get_running_loop().time() - started
            raise transport_failure(exc, timeouts or self.timeouts, seconds=seconds) from exc
        return _completion(body)

    async def _streamed(self, payload: bytes, timeouts: Timeouts) -> Completion:
        clock = ReplyClock(timeouts)
        reply = StreamedCompletion()
        try:
            async with clock.context:
                async with self._session.post(
                    self._url,
                    data=payload[:-1] + STREAM_FIELDS,
                    headers=self._headers,
                    timeout=timeouts.client_timeout(streaming=True),
                ) as response:
                    self._check(response)
                    if response.status != 200:
                        raise http_failure(response.status, response.headers, await read_body(response))
                    if response.content_type != "text/event-stream":
                        return _completion(await read_body(response))  # a server that does not stream
                    async for data in event_data(response, clock):
                        if data == b"[DONE]":
                            break
                        reply.add(data)
            return reply.completion(prompt_estimate(payload))
        except CallFailed:
            raise
        except TRANSPORT_ERRORS as exc:
            raise stream_failure(exc, clock, timeouts, reply.seen) from exc


def _completion(body: bytes) -> Completion:
    try:
        return parse_completion(body)
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
