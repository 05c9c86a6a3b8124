"""Anthropic's Message Batches API, dd's side.

``POST /v1/messages/batches`` with the requests inline (``custom_id`` + ``params``, the Messages
API body; up to 100,000 requests or 256 MB), ``GET /v1/messages/batches/{id}`` until its
``processing_status`` is ``ended``, then its ``results_url``: JSONL lines, each ``succeeded``
(a Message), ``errored`` (an error object), ``canceled`` or ``expired``, in any order.

Nothing is uploaded first, so the journal's ``submit`` record names no file, and a batch whose
create reply was lost cannot be found by its input. It is found by what the journal does know:
``lookup`` takes the earliest batch created since the submission (give or take ``CLOCK_SKEW_S``)
with exactly its number of requests that no run of this model has claimed. Should that be another
process's batch of the same size (its own reply lost, ours never sent), its results carry other
``custom_id``s: ours come back missing and go into a later batch, and nothing is paid twice.

A ``results_url`` on another host than ``base_url`` is not followed (the key would go there): the
results are read from the batch's own path instead.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import aiohttp

from dd_core.engine.llm.batch_api import BatchHTTP, BatchStatus, LineResult, count_field, string_field
from dd_core.engine.llm.client import CallFailed
from dd_core.engine.llm.providers.anthropic_messages import api_root, auth_headers, failure, wire
from dd_core.engine.llm.providers.anthropic_replies import message_completion
from dd_core.engine.llm.replies import MalformedReply
from dd_core.engine.llm.retry_policy import line_retryable
from dd_core.engine.llm.runtime import Endpoint
from dd_core.engine.llm.waits import RetryWaits
from dd_core.log import get_logger

if TYPE_CHECKING:
    from dd_core.engine.llm.batch_journal import Submission

log = get_logger("dd.batch")

PATH = "/v1/messages/batches"
#: A batch created this long before the submission was journaled may still be its batch.
CLOCK_SKEW_S = 600.0
#: Pages of ``GET /v1/messages/batches`` (100 each, newest first) searched by ``lookup``.
FIND_PAGES = 20
_STATUS = {"in_progress": "in_progress", "canceling": "cancelling"}


class AnthropicBatchClient(BatchHTTP):
    max_requests = 100_000
    max_bytes = 250 * 2**20

    def __init__(self, session: aiohttp.ClientSession, endpoint: Endpoint):
        super().__init__(
            session, api_root(endpoint), auth_headers(endpoint), timeouts=endpoint.timeouts, model=endpoint.model
        )
        #: Batches this client created or adopted (never adopted again by ``lookup``).
        self.claimed: set[str] = set()

    def _failure(self, status: int, headers: Any, body: bytes, what: str) -> CallFailed:
        return failure(status, headers, body, what)

    # --- as the batch runner uses it (``batch_api.BatchAPI``) ---------------------------

    async def prepare(self, requests: Mapping[str, bytes], name: str) -> str:
        return ""  # the requests travel inline with the create call

    async def submit(
        self, prepared: str, requests: Mapping[str, bytes], *, metadata: dict[str, str], submission: Submission
    ) -> BatchStatus:
        """Create the batch; when the reply is lost, look for the batch before trying again."""
        body = b'{"requests":[' + b",".join(_request(key, payload) for key, payload in requests.items()) + b"]}"
        headers = {**self._auth, "Content-Type": "application/json"}
        waits, attempt = RetryWaits(self._model), 0
        while True:
            try:
                status = _status(await self._json("POST", PATH, data=body, headers=headers))
                self.claimed.add(status.id)
                return status
            except CallFailed as exc:
                if not exc.retryable or attempt >= self._model.max_retries:
                    raise
                failure = exc
            found = await self.lookup(submission)
            if found is not None:
                log.info("batch %s was created although its reply was lost (%s)", found.id, failure)
                return found
            attempt += 1
            await self._sleep(waits.next_wait(failure, attempt))

    async def lookup(self, submission: Submission, taken: frozenset[str] = frozenset()) -> BatchStatus | None:
        """The earliest unclaimed batch of the submission's size created since it (see the module docstring)."""
        taken = taken | self.claimed
        since = submission.submitted_at - CLOCK_SKEW_S
        wanted = len(submission.keys)
        found: BatchStatus | None = None
        after: str | None = None
        for _ in range(FIND_PAGES):
            params = {"limit": "100", **({"after_id": after} if after else {})}
            page = await self._retrying(lambda params=params: self._json("GET", PATH, params=params), "list batches")
            data = page.get("data") if isinstance(page, dict) else None
            if not isinstance(data, list):
                raise CallFailed(
                    f"listing batches gave no 'data' list: {str(page)[:200]}", code="malformed", retryable=False
                )
            for item in data:
                created = _timestamp(item.get("created_at")) if isinstance(item, dict) else None
                if created is None:
                    continue
                if created < since:
                    return self._adopt(found)
                status = _status(item)
                if status.total == wanted and status.id not in taken:
                    found = status  # newest first: the last one seen is the earliest
            after = page.get("last_id") if page.get("has_more") else None
            if not after:
                break
        return self._adopt(found)

    def _adopt(self, status: BatchStatus | None) -> BatchStatus | None:
        if status is not None:
            self.claimed.add(status.id)
        return status

    async def retrieve(self, batch_id: str) -> BatchStatus:
        return _status(await self._retrying(lambda: self._json("GET", f"{PATH}/{batch_id}"), f"read batch {batch_id}"))

    async def results(self, status: BatchStatus) -> AsyncIterator[LineResult]:
        path = self._results_path(status)
        content = await self._retrying(
            lambda: self._request("GET", path, whole=True), f"download the results of batch {status.id}"
        )
        for line in content.splitlines():
            if line.strip():
                yield _line_result(line)

    def _results_path(self, status: BatchStatus) -> str:
        own = f"{PATH}/{status.id}/results"
        url = status.results_url
        if not url:
            return own
        base, given = urlsplit(self._base), urlsplit(url)
        if (given.scheme, given.netloc) != (base.scheme, base.netloc) or not given.path.startswith(base.path):
            log.warning("batch %s: results_url is on another host than base_url; reading %s instead", status.id, own)
            return own
        return given.path[len(base.path) :] + (f"?{given.query}" if given.query else "")


def batch_api(session: aiohttp.ClientSession, endpoint: Endpoint) -> AnthropicBatchClient:
    return AnthropicBatchClient(session, endpoint)


def _request(custom_id: str, payload: bytes) -> bytes:
    return b'{"custom_id":' + json.dumps(custom_id).encode() + b',"params":' + wire(payload) + b"}"


def _timestamp(value: Any) -> float | None:
    try:
        return datetime.fromisoformat(value).timestamp() if isinstance(value, str) else None
    except (ValueError, OverflowError):
        return None


def _status(data: Any) -> BatchStatus:
    """A Message Batch as a ``BatchStatus`` (an ended batch: ``completed``, or ``cancelled`` when
    its cancellation was asked for); anything off-shape is a typed error, not a crash."""
    batch_id = string_field(data, "id", "message batch")
    processing = data.get("processing_status")
    if not isinstance(processing, str):
        raise CallFailed(
            f"batch {batch_id}: the reply has no processing_status: {str(data)[:200]}", code="malformed", retryable=True
        )
    if processing == "ended":
        status = "cancelled" if data.get("cancel_initiated_at") else "completed"
    else:
        status = _STATUS.get(processing, processing)
    counts = data.get("request_counts")
    done = {name: count_field(counts, name) for name in ("processing", "succeeded", "errored", "canceled", "expired")}
    url = data.get("results_url")
    return BatchStatus(
        id=batch_id,
        status=status,
        total=sum(done.values()),
        completed=done["succeeded"],
        failed=done["errored"] + done["canceled"] + done["expired"],
        results_url=url if isinstance(url, str) else None,
    )


def _line_result(raw: bytes) -> LineResult:
    """One line of a results file (the retry table is ``retry_policy``'s; a ``canceled`` line
    comes only from a batch someone cancelled, so it is not sent again)."""
    try:
        line = json.loads(raw)
        custom_id, result = line["custom_id"], line["result"]
        kind = result["type"]
        if not isinstance(custom_id, str) or not isinstance(kind, str):
            raise TypeError("custom_id or result.type is not a string")
    except (ValueError, KeyError, TypeError) as exc:
        return LineResult(
            "", failure=CallFailed(f"unreadable result line ({exc}): {raw[:200]!r}", code="malformed", retryable=True)
        )
    if kind == "succeeded":
        try:
            return LineResult(custom_id, completion=message_completion(result.get("message")))
        except MalformedReply as exc:
            return LineResult(
                custom_id,
                failure=CallFailed(f"malformed message in the batch ({exc})", code="malformed", retryable=True),
            )
    if kind == "errored":
        error = result.get("error")
        inner = error.get("error") if isinstance(error, dict) else None
        code = str(inner.get("type")) if isinstance(inner, dict) else "unknown"
        message = str(inner.get("message"))[:300] if isinstance(inner, dict) else str(error)[:200]
        return LineResult(
            custom_id,
            failure=CallFailed(
                f"errored inside the batch: {code}: {message}", code=code, retryable=line_retryable(code)
            ),
        )
    if kind == "expired":
        return LineResult(
            custom_id,
            failure=CallFailed(
                "expired: the batch ended before this request ran",
                code="batch_expired",
                retryable=line_retryable("batch_expired"),
            ),
        )
    if kind == "canceled":
        return LineResult(
            custom_id,
            failure=CallFailed(
                "canceled: the batch was canceled",
                code="batch_cancelled",
                retryable=line_retryable("batch_cancelled", batch_cancelled=True),
            ),
        )
    return LineResult(
        custom_id, failure=CallFailed(f"unknown result type {kind[:40]!r}", code="malformed", retryable=True)
    )
