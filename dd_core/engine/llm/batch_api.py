"""What every provider's batch API gives the batch runner, and the HTTP both share.

A provider's batch client (OpenAI's and Azure's Files and Batch APIs in ``batch_client``,
Anthropic's Message Batches in ``providers.anthropic_batches``) is a ``BatchAPI``: it prepares a
group of requests (an upload, or nothing when the requests travel inline), submits them as one
batch, finds a batch whose submission was journaled but whose id was not (a lost reply, a crash),
polls it until it ends and reads its results as ``LineResult``s keyed by ``custom_id``.

``BatchHTTP`` is the plumbing they share: every call is retried on transient failures
(connection errors, timeouts, 408/409/425/429/5xx) with the run's backoff, ``Retry-After``
honoured, within the model's retries and wait limits; errors quote the server's message, never a
header (the key only ever travels in headers).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import aiohttp

from dd_core.config.models import ModelConfig
from dd_core.engine.llm.client import CallFailed, Completion, http_failure, read_body, transport_failures
from dd_core.engine.llm.replies import MalformedReply, parse_json
from dd_core.engine.llm.timeouts import Timeouts
from dd_core.engine.llm.waits import RetryWaits
from dd_core.log import get_logger

if TYPE_CHECKING:
    from dd_core.engine.llm.batch_journal import Submission

log = get_logger("dd.batch")

T = TypeVar("T")

TERMINAL = frozenset({"completed", "failed", "expired", "cancelled"})


@dataclass(frozen=True)
class BatchStatus:
    """What a poll says about a batch, in OpenAI's words whatever the provider (``status`` is
    one of validating, in_progress, finalizing, completed, failed, expired, cancelling, cancelled)."""

    id: str
    status: str
    input_file_id: str = ""
    total: int = 0
    completed: int = 0
    failed: int = 0
    output_file_id: str | None = None
    error_file_id: str | None = None
    #: Why the provider refused the input (status "failed").
    errors: tuple[str, ...] = ()
    metadata: dict[str, str] = field(default_factory=dict)
    #: Where the results are read (a provider that serves them at a URL of their own).
    results_url: str | None = None

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    def describe(self) -> str:
        return f"{self.status}, {self.completed:,} of {self.total:,} done, {self.failed:,} failed"


@dataclass(frozen=True)
class LineResult:
    """One request's outcome in a finished batch: a completion, or the failure to retry or report."""

    custom_id: str
    completion: Completion | None = None
    failure: CallFailed | None = None


class BatchAPI(Protocol):
    """A provider's batch API as the batch runner uses it."""

    #: The most requests, and bytes of requests, one batch may hold (larger groups are split).
    max_requests: int
    max_bytes: int

    async def prepare(self, requests: Mapping[str, bytes], name: str) -> str:
        """Make ``requests`` (custom id -> payload) ready to submit; returns what the journal
        records before the batch is created (an uploaded file's id; "" when nothing is uploaded)."""

    async def submit(
        self, prepared: str, requests: Mapping[str, bytes], *, metadata: dict[str, str], submission: Submission
    ) -> BatchStatus:
        """Create the batch (once, even when a reply is lost: see ``lookup``)."""

    async def lookup(self, submission: Submission, taken: frozenset[str] = frozenset()) -> BatchStatus | None:
        """The batch made for a journaled submission, or None when it was never created; never one
        of ``taken`` (batches the journal already gives to other submissions)."""

    async def wait(
        self, batch_id: str, poll_interval_s: float, on_progress: Callable[[BatchStatus], None] | None = None
    ) -> BatchStatus:
        """Poll until the batch ends."""

    def results(self, status: BatchStatus) -> AsyncIterator[LineResult]:
        """Every result line of an ended batch."""


class BatchHTTP:
    """JSON calls to one provider's batch API, retried as the module docstring says."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        headers: Mapping[str, str],
        *,
        timeouts: Timeouts,
        model: ModelConfig,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        query: Mapping[str, str] | None = None,
    ):
        self._session = session
        self._base = base_url.rstrip("/")
        self._auth = dict(headers)
        self._query = dict(query or {})
        self._timeouts = timeouts
        self._timeout = timeouts.client_timeout(streaming=False)
        self._model = model  # its max_retries and wait limits bound every call's retries
        self._sleep = sleep

    async def retrieve(self, batch_id: str) -> BatchStatus:
        raise NotImplementedError

    async def wait(
        self, batch_id: str, poll_interval_s: float, on_progress: Callable[[BatchStatus], None] | None = None
    ) -> BatchStatus:
        """Poll every ``poll_interval_s`` until the batch ends; report each new state."""
        last = None
        while True:
            status = await self.retrieve(batch_id)
            if on_progress is not None and status != last:
                on_progress(status)
            last = status
            if status.terminal:
                return status
            await self._sleep(poll_interval_s)

    async def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        body = await self._request(method, path, **kwargs)
        try:
            return parse_json(body)
        except MalformedReply as exc:
            raise CallFailed(
                f"{method} {path}: the reply is not JSON ({exc}): {body[:200]!r}", code="malformed", retryable=True
            ) from exc

    async def _request(self, method: str, path: str, *, whole: bool = False, **kwargs: Any) -> bytes:
        """One call; ``whole``: read a body of any size (a results file), else at most a reply's."""
        if self._query:
            kwargs["params"] = {**self._query, **kwargs.get("params", {})}
        headers = {**self._auth, **kwargs.pop("headers", {})}
        with transport_failures(self._timeouts, f"{method} {path}: "):
            async with self._session.request(
                method, self._base + path, headers=headers, timeout=self._timeout, **kwargs
            ) as response:
                body = await response.read() if whole else await read_body(response)
                if response.status != 200:
                    raise self._failure(response.status, response.headers, body, f"{method} {path}: ")
                return body

    def _failure(self, status: int, headers: Any, body: bytes, what: str) -> CallFailed:
        return http_failure(status, headers, body, what)

    async def _retrying(self, call: Callable[[], Awaitable[T]], what: str) -> T:
        waits, attempt = RetryWaits(self._model), 0
        while True:
            try:
                return await call()
            except CallFailed as exc:
                if not exc.retryable or attempt >= self._model.max_retries:
                    raise
                attempt += 1
                log.info("could not %s (%s)", what, exc)
                await self._sleep(waits.next_wait(exc, attempt))


def string_field(data: Any, name: str, what: str) -> str:
    value = data.get(name) if isinstance(data, dict) else None
    if not isinstance(value, str) or not value:
        raise CallFailed(f"{what}: the reply has no {name!r}: {str(data)[:200]}", code="malformed", retryable=False)
    return value


def count_field(counts: Any, name: str) -> int:
    value = counts.get(name) if isinstance(counts, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0
