"""The OpenAI Batch API, dd's side: upload a JSONL file of requests, create a batch, poll it,
read its output and error files. Azure OpenAI speaks the same API under other paths
(``providers.azure``).

Calls are retried as ``batch_api.BatchHTTP`` says. Creating a batch is the one call that is not
idempotent: when its outcome is unknown (the request may have reached the server), the client
looks for the batch by its input file before trying again, so a lost reply never makes a second
batch.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import aiohttp

from dd_core.engine.llm.batch_api import BatchHTTP, BatchStatus, LineResult, count_field, string_field
from dd_core.engine.llm.client import CallFailed, error_message
from dd_core.engine.llm.replies import MalformedReply, parse_completion
from dd_core.engine.llm.retry_policy import RETRYABLE_STATUS, line_retryable
from dd_core.engine.llm.waits import RetryWaits
from dd_core.log import get_logger

if TYPE_CHECKING:
    from dd_core.engine.llm.batch_journal import Submission

log = get_logger("dd.batch")

ENDPOINT = "/v1/chat/completions"
#: How many pages of ``GET /batches`` (100 each) to search for a batch whose create reply was lost.
FIND_PAGES = 20


def request_line(custom_id: str, payload: bytes, endpoint: str = ENDPOINT) -> bytes:
    """One line of the input file; ``payload`` is the serialised chat-completions body."""
    return (
        b'{"custom_id":'
        + json.dumps(custom_id).encode()
        + b',"method":"POST","url":"'
        + endpoint.encode()
        + b'","body":'
        + payload
        + b"}\n"
    )


def bearer(api_key: str | None) -> dict[str, str]:
    """OpenAI's authentication header for ``api_key`` (none without a key)."""
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


class BatchClient(BatchHTTP):
    """OpenAI's Files and Batch APIs at ``base_url`` (e.g. ``https://api.openai.com/v1``), with
    ``headers`` (``bearer(key)``)."""

    #: OpenAI's limits per batch: 50,000 requests and a 200 MB input file.
    max_requests = 50_000
    max_bytes = 190 * 2**20
    #: The ``url`` of every request line and the batch's ``endpoint``.
    endpoint = ENDPOINT

    # --- as the batch runner uses it (``batch_api.BatchAPI``) ---------------------------

    async def prepare(self, requests: Mapping[str, bytes], name: str) -> str:
        return await self.upload(
            (request_line(key, payload, self.endpoint) for key, payload in requests.items()), filename=f"{name}.jsonl"
        )

    async def submit(
        self, prepared: str, requests: Mapping[str, bytes], *, metadata: dict[str, str], submission: Submission
    ) -> BatchStatus:
        return await self.create(prepared, completion_window=self._model.batch_completion_window, metadata=metadata)

    async def lookup(self, submission: Submission, taken: frozenset[str] = frozenset()) -> BatchStatus | None:
        return await self.find(submission.input_file_id)  # a batch's input file is its own: exact

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
        file_id = string_field(data, "id", "file upload")
        await self._ready(file_id, data)
        return file_id

    async def _ready(self, file_id: str, upload: Any) -> None:
        """Return once the uploaded file can go into a batch (OpenAI's can at once)."""

    async def create(self, input_file_id: str, *, completion_window: str, metadata: dict[str, str]) -> BatchStatus:
        """Create the batch; when the reply is lost, find the batch made from this file first."""
        body = {
            "input_file_id": input_file_id,
            "endpoint": self.endpoint,
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

    # --- HTTP --------------------------------------------------------------------------

    async def _content(self, file_id: str) -> list[bytes]:
        return (await self._request("GET", f"/files/{file_id}/content", whole=True)).splitlines()


def _status(data: Any) -> BatchStatus:
    """A batch object as a ``BatchStatus``; anything off-shape is a typed error, not a crash."""
    batch_id = string_field(data, "id", "batch")
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
        status=status.lower(),  # Azure answers "Validating" at first
        input_file_id=str(data.get("input_file_id") or ""),
        total=count_field(counts, "total"),
        completed=count_field(counts, "completed"),
        failed=count_field(counts, "failed"),
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
