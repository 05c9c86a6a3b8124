"""OpenAI's Files and Batch APIs in the local test server (in memory).

- ``POST /v1/files`` (multipart: ``file``, ``purpose=batch``), ``GET /v1/files/{id}``,
  ``GET /v1/files/{id}/content``, ``DELETE /v1/files/{id}``;
- ``POST /v1/batches`` (``input_file_id``, ``endpoint``, ``completion_window``, ``metadata``),
  ``GET /v1/batches/{id}``, ``POST /v1/batches/{id}/cancel``, ``GET /v1/batches`` (newest first,
  ``limit``, ``after``).

Each request line is answered exactly as ``/v1/chat/completions`` answers the same body (same
content, same usage; fault rules of kind ``status`` and ``invalid_structured`` apply too), so a
dataset made through batches equals one made online. A batch moves through ``validating``,
``in_progress`` (``request_counts.completed`` grows with time), ``finalizing`` and ends
``completed``, ``expired``, ``failed`` (the input file is invalid: ``errors``) or ``cancelled``;
its state is derived from the clock whenever it is read, so a batch also progresses while no
client is connected. Successful lines go to ``output_file_id``, failed ones (an error status,
``batch_expired``, ``batch_cancelled``) to ``error_file_id``, in an order that differs from the
input's (clients must match lines by ``custom_id``).

Control API: ``POST /_control/batches`` sets :class:`BatchSettings` for batches created from then
on; ``GET /_control/batches`` returns counts (files, batches, polls...), each batch's request keys,
and the log of every Files/Batch API call; ``DELETE /_control/batches`` forgets files, batches and
the log (not the settings). ``POST /_control/batches/clock`` drives the clock batches move by
(see ``batch_clock``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from dd_core.testing.llm_server.batch_clock import BatchClock, clock_route
from dd_core.testing.llm_server.openai_batch_files import (
    COMPLETION_WINDOW,
    ENDPOINT,
    RequestLine,
    StoredFile,
    create_problem,
    error_body,
    error_line,
    new_id,
    parse_input,
    response_line,
    share,
    succeeded,
)

TERMINAL = ("completed", "failed", "expired", "cancelled")
#: Lines answered between two yields to the event loop while a batch is processed.
_CHUNK = 200

#: Answers one chat-completions body: (HTTP status, JSON body), as the online endpoint would.
Answer = Callable[[Any], tuple[int, dict[str, Any]]]
ErrorResponse = Callable[[int, str], web.Response]


@dataclasses.dataclass(frozen=True)
class BatchSettings:
    """How batches created from now on behave (a JSON object to ``POST /_control/batches``)."""

    validating_s: float = 0.0
    #: Time in ``in_progress``; ``request_counts.completed`` grows evenly over it.
    processing_s: float = 0.0
    finalizing_s: float = 0.0
    #: Share of requests answered with ``failure_status`` (error file), chosen from a hash of
    #: (``seed``, request body); one request body fails at most ``failures_per_request`` times
    #: over the server's life (null: every time), so a retry in a later batch can succeed.
    failure_share: float = 0.0
    failure_status: int = 500
    failures_per_request: int | None = 1
    #: Above 0 the batch ends ``expired``: this share of its requests (chosen like failures) was
    #: not run (``batch_expired`` lines in the error file), the rest is in the output file.
    expire_share: float = 0.0
    seed: int = 0
    max_requests: int = 50_000
    #: The next ``fail_calls`` Files/Batch API calls are answered ``fail_status`` (transient trouble).
    fail_calls: int = 0
    fail_status: int = 503
    #: The next ``lose_create_replies`` creates make their batch, then drop the connection unanswered.
    lose_create_replies: int = 0

    def __post_init__(self) -> None:
        for name in ("validating_s", "processing_s", "finalizing_s"):
            value = getattr(self, name)
            if not (_is_number(value) and math.isfinite(value) and 0 <= value <= 86_400):
                raise ValueError(f"{name!r} must be a number of seconds between 0 and 86400, got {value!r}")
        for name in ("failure_share", "expire_share"):
            value = getattr(self, name)
            if not (_is_number(value) and 0 <= value <= 1):
                raise ValueError(f"{name!r} must be between 0 and 1, got {value!r}")
        for name in ("failure_status", "fail_status"):
            if not (isinstance(getattr(self, name), int) and 400 <= getattr(self, name) <= 599):
                raise ValueError(f"{name!r} must be 4xx or 5xx, got {getattr(self, name)!r}")
        for name in ("fail_calls", "lose_create_replies"):
            if not (isinstance(getattr(self, name), int) and getattr(self, name) >= 0):
                raise ValueError(f"{name!r} must be a whole number >= 0")
        if self.failures_per_request is not None and not (
            isinstance(self.failures_per_request, int) and self.failures_per_request >= 0
        ):
            raise ValueError("'failures_per_request' must be a whole number >= 0 or null")
        if not (isinstance(self.max_requests, int) and self.max_requests >= 1):
            raise ValueError("'max_requests' must be a whole number >= 1")

    @classmethod
    def from_json(cls, data: Any) -> BatchSettings:
        if not isinstance(data, dict):
            raise ValueError(f"batch settings must be a JSON object, got {data!r}")
        try:
            return cls(**data)
        except TypeError as exc:
            raise ValueError(f"bad batch settings {data!r}: {exc}") from None


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclasses.dataclass
class _Batch:
    id: str
    input_file_id: str
    completion_window: str
    metadata: dict[str, str] | None
    settings: BatchSettings
    lines: list[RequestLine]
    errors: list[dict[str, Any]]  # validation errors: the batch fails
    created: float  # monotonic
    created_at: int  # unix seconds
    window_s: float
    results: list[dict[str, Any]] | None = None  # one per line once processed: output or error line
    cancelled_at: float | None = None
    status: str = "validating"
    output_file_id: str | None = None
    error_file_id: str | None = None
    counts: dict[str, int] | None = None  # final request counts, once ended
    ended: dict[str, int] = dataclasses.field(default_factory=dict)  # event -> unix time


class BatchService:
    """Files, batches, their lifecycle, and the log of every call."""

    def __init__(
        self,
        answer: Answer,
        authorized: Callable[[web.Request], bool],
        error: ErrorResponse,
    ):
        self._answer = answer
        self._authorized = authorized
        self._error = error
        self._clock = BatchClock()
        self.settings = BatchSettings()
        self.failures: Counter[str] = Counter()  # request key -> injected failures so far
        self._fail_calls = self._lose_creates = 0
        self.reset()

    def reset(self) -> None:
        self.files: dict[str, StoredFile] = {}
        self.batches: dict[str, _Batch] = {}
        self.log: list[dict[str, Any]] = []
        self.counts: Counter[str] = Counter()
        self._tasks: set[asyncio.Task] = set()

    def add_routes(self, app: web.Application) -> None:
        api = self._api
        app.add_routes(
            [
                web.post("/v1/files", api(self._upload)),
                web.get("/v1/files/{file_id}", api(self._file_info)),
                web.get("/v1/files/{file_id}/content", api(self._file_content)),
                web.delete("/v1/files/{file_id}", api(self._delete_file)),
                web.post("/v1/batches", api(self._create)),
                web.get("/v1/batches", api(self._list)),
                web.get("/v1/batches/{batch_id}", api(self._retrieve)),
                web.post("/v1/batches/{batch_id}/cancel", api(self._cancel)),
                web.post("/_control/batches", self._set_settings),
                web.get("/_control/batches", self._stats),
                web.delete("/_control/batches", self._reset),
                clock_route(self._clock, self._error),
            ]
        )

    def _api(
        self, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        """A Files/Batch API handler behind the key check and the injected transient failures."""

        async def handle(request: web.Request) -> web.StreamResponse:
            if not self._authorized(request):
                return self._error(401, "Incorrect API key provided.")
            if self._fail_calls:
                self._fail_calls -= 1
                self._note("failed_call", path=request.path, status=self.settings.fail_status)
                return self._error(self.settings.fail_status, f"Injected fault: HTTP {self.settings.fail_status}.")
            return await handler(request)

        return handle

    def _note(self, op: str, **fields: Any) -> None:
        self.counts[op] += 1
        self.log.append({"t": self._clock(), "op": op, **fields})

    # --- files ---------------------------------------------------------------------

    async def _upload(self, request: web.Request) -> web.Response:
        if not request.content_type.startswith("multipart/"):
            return self._error(400, "Uploads must be multipart/form-data with fields 'file' and 'purpose'.")
        form = await request.post()
        upload, purpose = form.get("file"), form.get("purpose")
        if not isinstance(upload, web.FileField) or not isinstance(purpose, str):
            return self._error(400, "Uploads need a 'file' part and a 'purpose' field.")
        if purpose != "batch":
            return self._error(400, f"This server accepts files with purpose 'batch' only, got {purpose!r}.")
        content = upload.file.read()
        file = StoredFile(new_id("file-"), upload.filename or "upload.jsonl", purpose, content, int(time.time()))
        self.files[file.id] = file
        self._note("upload", file_id=file.id, bytes=len(content), lines=content.count(b"\n"))
        return web.json_response(file.to_json())

    def _file(self, request: web.Request) -> StoredFile | None:
        return self.files.get(request.match_info["file_id"])

    async def _file_info(self, request: web.Request) -> web.Response:
        file = self._file(request)
        return web.json_response(file.to_json()) if file else self._error(404, "No such file.")

    async def _file_content(self, request: web.Request) -> web.Response:
        file = self._file(request)
        if file is None:
            return self._error(404, "No such file.")
        self._note("content", file_id=file.id)
        return web.Response(body=file.content, content_type="application/octet-stream")

    async def _delete_file(self, request: web.Request) -> web.Response:
        file = self.files.pop(request.match_info["file_id"], None)
        if file is None:
            return self._error(404, "No such file.")
        self._note("delete_file", file_id=file.id)
        return web.json_response({"id": file.id, "object": "file", "deleted": True})

    # --- batches -------------------------------------------------------------------

    async def _create(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            body = None
        problem = create_problem(body, self.files)
        if problem:
            return self._error(400, problem)
        file = self.files[body["input_file_id"]]
        lines, errors = parse_input(file.content, self.settings.max_requests)
        match = COMPLETION_WINDOW.match(body["completion_window"])
        window_s = int(match.group(1)) * (3600 if match.group(2) == "h" else 86_400)
        batch = _Batch(
            id=new_id("batch_"), input_file_id=file.id, completion_window=body["completion_window"],
            metadata=body.get("metadata"), settings=self.settings, lines=lines, errors=errors,
            created=self._clock(), created_at=int(time.time()), window_s=window_s,
        )  # fmt: skip
        self.batches[batch.id] = batch
        if not errors:
            task = asyncio.ensure_future(self._process(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        self._note("create", batch_id=batch.id, input_file_id=file.id, requests=len(lines))
        if self._lose_creates:
            self._lose_creates -= 1
            request.protocol.force_close()  # the batch exists; its reply never arrives
            return web.Response()
        return web.json_response(self._view(batch))

    async def _process(self, batch: _Batch) -> None:
        """Answer every line (yielding to the loop now and then); reveal them when the clock says."""
        settings, results = batch.settings, []
        for number, line in enumerate(batch.lines):
            if number and number % _CHUNK == 0:
                await asyncio.sleep(0)
            if settings.expire_share and share(settings.seed, "expire", line.body) < settings.expire_share:
                results.append(
                    error_line(
                        line,
                        "batch_expired",
                        "This request could not be executed before the completion window expired.",
                    )
                )
            elif self._inject_failure(settings, line):
                message = f"Injected batch failure: HTTP {settings.failure_status}."
                results.append(
                    response_line(line, settings.failure_status, error_body(settings.failure_status, message))
                )
            else:
                results.append(response_line(line, *self._answer(line.body)))
        batch.results = results

    def _inject_failure(self, settings: BatchSettings, line: RequestLine) -> bool:
        if not settings.failure_share or share(settings.seed, "fail", line.body) >= settings.failure_share:
            return False
        if settings.failures_per_request is not None and self.failures[line.key] >= settings.failures_per_request:
            return False
        self.failures[line.key] += 1
        return True

    def _advance(self, batch: _Batch) -> None:
        """Move the batch to the state the clock puts it in; write its files when it ends."""
        if batch.status in TERMINAL:
            return
        if batch.cancelled_at is not None:
            if batch.results is not None or batch.errors:
                self._end(batch, "cancelled")
            return
        s = batch.settings
        elapsed = self._clock() - batch.created
        if elapsed < s.validating_s:
            return
        if batch.errors:
            self._end(batch, "failed")
            return
        batch.status = "in_progress"
        batch.ended.setdefault("in_progress_at", batch.created_at + int(s.validating_s))
        if elapsed < s.validating_s + s.processing_s or batch.results is None:
            return
        batch.status = "finalizing"
        batch.ended.setdefault("finalizing_at", int(time.time()))
        if elapsed < s.validating_s + s.processing_s + s.finalizing_s:
            return
        self._end(batch, "expired" if s.expire_share else "completed")

    def _end(self, batch: _Batch, status: str) -> None:
        batch.status = status
        batch.ended[f"{status}_at"] = int(time.time())
        if status == "failed":
            return
        results = list(batch.results or [])
        if status == "cancelled":
            done = self._progress(batch, batch.cancelled_at)
            cut = [
                error_line(line, "batch_cancelled", "This request was not run: the batch was cancelled.")
                for line in batch.lines[done:]
            ]
            results = results[:done] + cut
        random.Random(batch.id).shuffle(results)  # lines come back in another order than sent
        answered = [r for r in results if succeeded(r)]
        failed = [r for r in results if not succeeded(r)]
        batch.counts = {"total": len(batch.lines), "completed": len(answered), "failed": len(failed)}
        batch.output_file_id = self._result_file(batch, "output", answered)
        batch.error_file_id = self._result_file(batch, "errors", failed)

    def _result_file(self, batch: _Batch, kind: str, lines: list[dict[str, Any]]) -> str | None:
        if not lines:
            return None
        content = "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines).encode()
        file = StoredFile(new_id("file-"), f"{batch.id}_{kind}.jsonl", "batch_output", content, int(time.time()))
        self.files[file.id] = file
        return file.id

    def _progress(self, batch: _Batch, at: float | None = None) -> int:
        """How many of the batch's requests count as run at monotonic time ``at`` (default now)."""
        s = batch.settings
        elapsed = (self._clock() if at is None else at) - batch.created - s.validating_s
        if elapsed <= 0:
            return 0
        if batch.results is None:
            return 0
        share = 1.0 if s.processing_s == 0 else min(1.0, elapsed / s.processing_s)
        return int(len(batch.lines) * share)

    def _view(self, batch: _Batch) -> dict[str, Any]:
        """The batch object in OpenAI's shape."""
        total = len(batch.lines)
        if batch.counts is not None:
            counts = batch.counts
        elif batch.status in ("in_progress", "finalizing"):
            counts = {"total": total, "completed": self._progress(batch), "failed": 0}
        else:
            counts = {"total": 0 if batch.errors else total, "completed": 0, "failed": 0}
        return {
            "id": batch.id,
            "object": "batch",
            "endpoint": ENDPOINT,
            "errors": {"object": "list", "data": batch.errors} if batch.errors else None,
            "input_file_id": batch.input_file_id,
            "completion_window": batch.completion_window,
            "status": batch.status,
            "output_file_id": batch.output_file_id,
            "error_file_id": batch.error_file_id,
            "created_at": batch.created_at,
            "in_progress_at": batch.ended.get("in_progress_at"),
            "expires_at": batch.created_at + int(batch.window_s),
            "finalizing_at": batch.ended.get("finalizing_at"),
            "completed_at": batch.ended.get("completed_at"),
            "failed_at": batch.ended.get("failed_at"),
            "expired_at": batch.ended.get("expired_at"),
            "cancelling_at": batch.ended.get("cancelling_at"),
            "cancelled_at": batch.ended.get("cancelled_at"),
            "request_counts": counts,
            "metadata": batch.metadata,
        }

    def _batch(self, request: web.Request) -> _Batch | None:
        batch = self.batches.get(request.match_info["batch_id"])
        if batch is not None:
            self._advance(batch)
        return batch

    async def _retrieve(self, request: web.Request) -> web.Response:
        batch = self._batch(request)
        if batch is None:
            return self._error(404, "No such batch.")
        view = self._view(batch)
        self._note("poll", batch_id=batch.id, status=batch.status, completed=view["request_counts"]["completed"])
        return web.json_response(view)

    async def _cancel(self, request: web.Request) -> web.Response:
        batch = self._batch(request)
        if batch is None:
            return self._error(404, "No such batch.")
        if batch.status in TERMINAL:
            return self._error(409, f"Cannot cancel a batch with status {batch.status!r}.")
        if batch.cancelled_at is None:
            batch.cancelled_at = self._clock()
            batch.ended["cancelling_at"] = int(time.time())
        self._note("cancel", batch_id=batch.id)
        batch.status = "cancelling"
        if batch.results is not None:
            self._end(batch, "cancelled")
        return web.json_response(self._view(batch))

    async def _list(self, request: web.Request) -> web.Response:
        try:
            limit = int(request.query.get("limit", "20"))
        except ValueError:
            limit = 0
        if not 1 <= limit <= 100:
            return self._error(400, "'limit' must be a whole number between 1 and 100.")
        newest_first = list(reversed(self.batches.values()))
        after = request.query.get("after")
        if after is not None:
            ids = [b.id for b in newest_first]
            newest_first = newest_first[ids.index(after) + 1 :] if after in ids else []
        page = newest_first[:limit]
        for batch in page:
            self._advance(batch)
        self._note("list", after=after)
        data = [self._view(b) for b in page]
        return web.json_response(
            {
                "object": "list",
                "data": data,
                "first_id": data[0]["id"] if data else None,
                "last_id": data[-1]["id"] if data else None,
                "has_more": len(newest_first) > limit,
            }
        )

    # --- control -------------------------------------------------------------------

    async def _set_settings(self, request: web.Request) -> web.Response:
        try:
            self.settings = BatchSettings.from_json(await request.json())
        except ValueError as exc:  # also a body that is not JSON
            return self._error(400, str(exc))
        self._fail_calls, self._lose_creates = self.settings.fail_calls, self.settings.lose_create_replies
        return web.json_response(dataclasses.asdict(self.settings))

    async def _stats(self, request: web.Request) -> web.Response:
        for batch in self.batches.values():
            self._advance(batch)
        return web.json_response(self.snapshot())

    async def _reset(self, request: web.Request) -> web.Response:
        for task in self._tasks:
            task.cancel()
        self.reset()
        self.failures.clear()
        return web.json_response({"reset": True})

    def snapshot(self) -> dict[str, Any]:
        return {
            "settings": dataclasses.asdict(self.settings),
            "counts": {
                op: self.counts[op]
                for op in ("upload", "create", "poll", "content", "cancel", "list", "delete_file", "failed_call")
            },
            "batches": [
                {
                    "id": b.id,
                    "status": b.status,
                    "requests": len(b.lines),
                    "keys": [line.key for line in b.lines],
                    "custom_ids": [line.custom_id for line in b.lines],
                    "metadata": b.metadata,
                }
                for b in self.batches.values()
            ],
            "log": self.log,
        }
