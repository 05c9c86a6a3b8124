"""The OpenAI Batch API, dd's side: upload a JSONL file of requests, create a batch, poll it,
read its output and error files.

Every call is retried on transient failures (connection errors, timeouts, 408/409/425/429/5xx)
with the run's backoff, ``Retry-After`` honoured, within the model's retries and wait limits. Creating a batch is the one call that is not
idempotent: when its outcome is unknown (the request may have reached the server), the client
looks for the batch by its input file before trying again, so a lost reply never makes a second
batch. The key only ever travels in the ``Authorization`` header; errors quote the server's
message, never a header.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import aiohttp

from dd_core.config.models import ModelConfig
from dd_core.engine.llm.client import (
    CallFailed,
    Completion,
    error_message,
    http_failure,
    read_body,
    transport_failures,
)
from dd_core.engine.llm.replies import MalformedReply, parse_completion, parse_json
from dd_core.engine.llm.retry_policy import RETRYABLE_STATUS, line_retryable
from dd_core.engine.llm.timeouts import Timeouts
from dd_core.engine.llm.waits import RetryWaits
from dd_core.log import get_logger

log = get_logger("dd.batch")

ENDPOINT = "/v1/chat/completions"
TERMINAL = frozenset({"completed", "failed", "expired", "cancelled"})
#: How many pages of ``GET /batches`` (100 each) to search for a batch whose create reply was lost.
FIND_PAGES = 20

T = TypeVar("T")


@dataclass(frozen=True)
class BatchStatus:
    """What a poll says about a batch."""

    id: str
    status: str
    input_file_id: str
    total: int = 0
    completed: int = 0
    failed: int = 0
    output_file_id: str | None = None
    error_file_id: str | None = None
    #: Why the provider refused the input file (status "failed").
    errors: tuple[str, ...] = ()
    metadata: dict[str, str] = field(default_factory=dict)

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


def request_line(custom_id: str, payload: bytes) -> bytes:
    """One line of the input file; ``payload`` is the serialised chat-completions body."""
    return (
        b'{"custom_id":'
        + json.dumps(custom_id).encode()
        + b',"method":"POST","url":"'
        + ENDPOINT.encode()
        + b'","body":'
        + payload
        + b"}\n"
    )


class BatchClient:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        api_key: str | None,
        *,
        timeouts: Timeouts,
        model: ModelConfig,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ):
        self._session = session
        self._base = base_url.rstrip("/")
        self._auth = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._timeouts = timeouts
        self._timeout = timeouts.client_timeout(streaming=False)
        self._model = model  # its max_retries and wait limits bound every call's retries
        self._sleep = sleep

    # --- the five calls ----------------------------------------------------------------

    async def upload(self, lines: Iterable[bytes], filename: str = "dd-batch.jsonl") -> str:
        """Upload request lines as one file (purpose ``batch``); returns its id."""
        content = b"".join(lines)

        async def once() -> Any:
            form = aiohttp.FormData()
            form.add_field("purpose", "batch")
            form.add_field("file", content, filename=filename, content_type="application/jsonl")
            return await self._json("POST", "/files", data=form)

        data = await self._retrying(once, "upload the batch input file")
        return _string(data, "id", "file upload")

    async def create(self, input_file_id: str, *, completion_window: str, metadata: dict[str, str]) -> BatchStatus:
        """Create the batch; when the reply is lost, find the batch made from this file first."""
        body = {
            "input_file_id": input_file_id,
            "endpoint": ENDPOINT,
            "completion_window": completion_window,
            "metadata": metadata,
        }
        waits, attempt = RetryWaits(self._model), 0
        while True:
            try:
                return _status(await self._json("POST", "/batches", json=body))
            except CallFailed as exc:
                if not exc.retryable or attempt >= self._model.max_retries:
                    raise
                failure = exc
            found = await self.find(input_file_id)
            if found is not None:
                log.info(
                    "batch %s from file %s was created although its reply was lost (%s)",
                    found.id,
                    input_file_id,
                    failure,
                )
                return found
            attempt += 1
            await self._sleep(waits.next_wait(failure, attempt))

    async def retrieve(self, batch_id: str) -> BatchStatus:
        return _status(
            await self._retrying(lambda: self._json("GET", f"/batches/{batch_id}"), f"read batch {batch_id}")
        )

    async def find(self, input_file_id: str) -> BatchStatus | None:
        """The newest batch made from ``input_file_id``, searching the newest batches of the account."""
        after: str | None = None
        for _ in range(FIND_PAGES):
            params = {"limit": "100", **({"after": after} if after else {})}
            page = await self._retrying(
                lambda params=params: self._json("GET", "/batches", params=params), "list batches"
            )
            data = page.get("data") if isinstance(page, dict) else None
            if not isinstance(data, list):
                raise CallFailed(
                    f"listing batches gave no 'data' list: {str(page)[:200]}", code="malformed", retryable=False
                )
            for item in data:
                if isinstance(item, dict) and item.get("input_file_id") == input_file_id:
                    return _status(item)
            if not page.get("has_more") or not data:
                return None
            after = data[-1].get("id") if isinstance(data[-1], dict) else None
            if not after:
                return None
        return None

    async def results(self, status: BatchStatus) -> AsyncIterator[LineResult]:
        """Every line of the batch's output and error files, as results keyed by ``custom_id``
        (in a batch someone cancelled, no failed line is retried: see ``retry_policy``)."""
        cancelled = status.status == "cancelled"
        for file_id in (status.output_file_id, status.error_file_id):
            if file_id:
                for line in await self._retrying(
                    lambda file_id=file_id: self._content(file_id), f"download file {file_id}"
                ):
                    if line.strip():
                        yield _line_result(line, batch_cancelled=cancelled)

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

    # --- HTTP --------------------------------------------------------------------------

    async def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        body = await self._request(method, path, **kwargs)
        try:
            return parse_json(body)
        except MalformedReply as exc:
            raise CallFailed(
                f"{method} {path}: the reply is not JSON ({exc}): {body[:200]!r}", code="malformed", retryable=True
            ) from exc

    async def _content(self, file_id: str) -> list[bytes]:
        return (await self._request("GET", f"/files/{file_id}/content")).splitlines()

    async def _request(self, method: str, path: str, **kwargs: Any) -> bytes:
        with transport_failures(self._timeouts, f"{method} {path}: "):
            async with self._session.request(
                method, self._base + path, headers=self._auth, timeout=self._timeout, **kwargs
            ) as response:
                body = await response.read() if path.endswith("/content") else await read_body(response)
                if response.status != 200:
                    raise http_failure(response.status, response.headers, body, f"{method} {path}: ")
                return body

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


def _string(data: Any, name: str, what: str) -> str:
    value = data.get(name) if isinstance(data, dict) else None
    if not isinstance(value, str) or not value:
        raise CallFailed(f"{what}: the reply has no {name!r}: {str(data)[:200]}", code="malformed", retryable=False)
    return value


def _count(counts: Any, name: str) -> int:
    value = counts.get(name) if isinstance(counts, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def _status(data: Any) -> BatchStatus:
    """A batch object as a ``BatchStatus``; anything off-shape is a typed error, not a crash."""
    batch_id = _string(data, "id", "batch")
    status = data.get("status")
    if not isinstance(status, str):
        raise CallFailed(
            f"batch {batch_id}: the reply has no status: {str(data)[:200]}", code="malformed", retryable=True
        )
    counts = data.get("request_counts")
    errors = data.get("errors") or {}
    messages = tuple(
        str(e.get("message"))[:300] + (f" (line {e['line']})" if isinstance(e.get("line"), int) else "")
        for e in (errors.get("data") or [] if isinstance(errors, dict) else [])
        if isinstance(e, dict)
    )
    metadata = data.get("metadata")
    return BatchStatus(
        id=batch_id,
        status=status,
        input_file_id=str(data.get("input_file_id") or ""),
        total=_count(counts, "total"),
        completed=_count(counts, "completed"),
        failed=_count(counts, "failed"),
        output_file_id=data.get("output_file_id") if isinstance(data.get("output_file_id"), str) else None,
        error_file_id=data.get("error_file_id") if isinstance(data.get("error_file_id"), str) else None,
        errors=messages,
        metadata={str(k): str(v) for k, v in metadata.items()} if isinstance(metadata, dict) else {},
    )


def _line_result(raw: bytes, *, batch_cancelled: bool = False) -> LineResult:
    """One line of an output or error file (the retry table is ``retry_policy``'s)."""
    try:
        line = json.loads(raw)
        custom_id = line["custom_id"]
        if not isinstance(custom_id, str):
            raise TypeError("custom_id is not a string")
    except (ValueError, KeyError, TypeError) as exc:
        return LineResult(
            "", failure=CallFailed(f"unreadable result line ({exc}): {raw[:200]!r}", code="malformed", retryable=True)
        )
    response, error = line.get("response"), line.get("error")
    if isinstance(response, dict) and response.get("status_code") == 200 and not error:
        try:
            return LineResult(custom_id, completion=parse_completion(json.dumps(response.get("body")).encode()))
        except MalformedReply as exc:
            return LineResult(
                custom_id,
                failure=CallFailed(f"malformed completion in the batch ({exc})", code="malformed", retryable=True),
            )
    if isinstance(response, dict) and isinstance(response.get("status_code"), int):
        status = response["status_code"]
        message = error_message(json.dumps(response.get("body")).encode())
        return LineResult(
            custom_id,
            failure=CallFailed(
                f"HTTP {status} inside the batch: {message}",
                code=str(status),
                status=status,
                retryable=status in RETRYABLE_STATUS and not batch_cancelled,
            ),
        )
    code = str(error.get("code") or error.get("type") or "unknown") if isinstance(error, dict) else "unknown"
    message = str(error.get("message"))[:300] if isinstance(error, dict) else str(line)[:200]
    retryable = line_retryable(code, batch_cancelled=batch_cancelled)
    return LineResult(custom_id, failure=CallFailed(f"{code}: {message}", code=code, retryable=retryable))
