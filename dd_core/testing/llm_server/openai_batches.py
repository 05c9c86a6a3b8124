"""OpenAI's and Azure OpenAI's Files and Batch APIs in the local test server (in memory; the
batches' lifecycle is ``batch_lifecycle``'s).

OpenAI (``FilesDialect.protocol == "openai"``):

- ``POST /v1/files`` (multipart: ``file``, ``purpose=batch``), ``GET /v1/files/{id}``,
  ``GET /v1/files/{id}/content``, ``DELETE /v1/files/{id}``;
- ``POST /v1/batches`` (``input_file_id``, ``endpoint``, ``completion_window``, ``metadata``),
  ``GET /v1/batches/{id}``, ``POST /v1/batches/{id}/cancel``, ``GET /v1/batches`` (newest first,
  ``limit``, ``after``); up to 50,000 requests a batch.

Azure OpenAI: the same under ``/openai/...`` with a required ``api-version`` query, Azure's key
header and error shape. Request lines and the batch's ``endpoint`` are ``/chat/completions``, and
every line names, as its ``model``, the same deployment the server serves; an upload answers
``pending`` (a later ``GET`` says ``processed``); a new batch says ``Validating``, with null request
counts; times are ISO 8601 strings; up to 100,000 requests a batch.

Successful lines go to ``output_file_id``, failed ones (an error status, ``batch_expired``,
``batch_cancelled``) to ``error_file_id``.
"""

from __future__ import annotations

import datetime
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from dd_core.testing.llm_server.batch_lifecycle import (
    TERMINAL,
    Answer,
    Batch,
    BatchStore,
    ErrorBody,
    LineOutcome,
    RequestLine,
    new_id,
)
from dd_core.testing.llm_server.openai_batch_files import (
    COMPLETION_WINDOW,
    StoredFile,
    create_problem,
    parse_input,
    result_line,
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_TIMES = (
    "created_at", "in_progress_at", "expires_at", "finalizing_at", "completed_at", "failed_at", "expired_at",
    "cancelling_at", "cancelled_at",
)  # fmt: skip


@dataclass(frozen=True)
class FilesDialect:
    """How one protocol's Files and Batch APIs look."""

    protocol: str  # "openai" or "azure"
    prefix: str  # "/v1" or "/openai"
    endpoint: str  # of the batch and of its request lines
    max_requests: int
    answer: Answer
    error: Callable[[int, str], web.Response]
    error_body: ErrorBody
    authorized: Callable[[web.Request], bool]
    #: Refuses a call on its URL alone (Azure: no ``api-version``), else None.
    refusal: Callable[[web.Request], web.Response | None]
    #: The deployments a line may name (Azure); None: any model.
    deployments: frozenset[str] | None = None

    @property
    def azure(self) -> bool:
        return self.protocol == "azure"


class FilesBatchesAPI:
    """One protocol's Files and Batch API routes over the shared ``BatchStore``."""

    def __init__(self, store: BatchStore, dialect: FilesDialect):
        self.store = store
        self.dialect = dialect

    def add_routes(self, app: web.Application) -> None:
        api, prefix = self._api, self.dialect.prefix
        app.add_routes(
            [
                web.post(f"{prefix}/files", api(self._upload)),
                web.get(f"{prefix}/files/{{file_id}}", api(self._file_info)),
                web.get(f"{prefix}/files/{{file_id}}/content", api(self._file_content)),
                web.delete(f"{prefix}/files/{{file_id}}", api(self._delete_file)),
                web.post(f"{prefix}/batches", api(self._create)),
                web.get(f"{prefix}/batches", api(self._list)),
                web.get(f"{prefix}/batches/{{batch_id}}", api(self._retrieve)),
                web.post(f"{prefix}/batches/{{batch_id}}/cancel", api(self._cancel)),
            ]
        )

    def _api(self, handler: Handler) -> Handler:
        """A handler behind the URL and key checks and the injected transient failures."""

        async def handle(request: web.Request) -> web.StreamResponse:
            refused = self.dialect.refusal(request)
            if refused is not None:
                return refused
            if not self.dialect.authorized(request):
                return self.dialect.error(401, "Incorrect API key provided.")
            failing = self.store.failing_call(request.path)
            if failing is not None:
                return self.dialect.error(failing, f"Injected fault: HTTP {failing}.")
            return await handler(request)

        return handle

    # --- files ---------------------------------------------------------------------

    async def _upload(self, request: web.Request) -> web.Response:
        error = self.dialect.error
        if not request.content_type.startswith("multipart/"):
            return error(400, "Uploads must be multipart/form-data with fields 'file' and 'purpose'.")
        form = await request.post()
        upload, purpose = form.get("file"), form.get("purpose")
        if not isinstance(upload, web.FileField) or not isinstance(purpose, str):
            return error(400, "Uploads need a 'file' part and a 'purpose' field.")
        if purpose != "batch":
            return error(400, f"This server accepts files with purpose 'batch' only, got {purpose!r}.")
        content = upload.file.read()
        file = StoredFile(new_id("file-"), upload.filename or "upload.jsonl", purpose, content, int(time.time()))
        self.store.files[file.id] = file
        self.store.note("upload", file_id=file.id, bytes=len(content), lines=content.count(b"\n"))
        return web.json_response(file.to_json("pending" if self.dialect.azure else "processed"))

    def _file(self, request: web.Request) -> StoredFile | None:
        return self.store.files.get(request.match_info["file_id"])

    async def _file_info(self, request: web.Request) -> web.Response:
        file = self._file(request)
        return web.json_response(file.to_json()) if file else self.dialect.error(404, "No such file.")

    async def _file_content(self, request: web.Request) -> web.Response:
        file = self._file(request)
        if file is None:
            return self.dialect.error(404, "No such file.")
        self.store.note("content", file_id=file.id)
        content = self.store.content(file.content) if file.purpose == "batch_output" else file.content
        return web.Response(body=content, content_type="application/octet-stream")

    async def _delete_file(self, request: web.Request) -> web.Response:
        file = self.store.files.pop(request.match_info["file_id"], None)
        if file is None:
            return self.dialect.error(404, "No such file.")
        self.store.note("delete_file", file_id=file.id)
        return web.json_response({"id": file.id, "object": "file", "deleted": True})

    # --- batches -------------------------------------------------------------------

    async def _create(self, request: web.Request) -> web.Response:
        store, dialect = self.store, self.dialect
        try:
            body = await request.json()
        except ValueError:
            body = None
        problem = create_problem(body, store.files, dialect.endpoint)
        if problem:
            return dialect.error(400, problem)
        file = store.files[body["input_file_id"]]
        settings = store.settings
        lines, errors = parse_input(file.content, settings.max_requests or dialect.max_requests, dialect.endpoint)
        errors += self._deployment_errors(lines) if not errors else []
        match = COMPLETION_WINDOW.match(body["completion_window"])
        batch = Batch(
            id=new_id("batch_"), protocol=dialect.protocol, lines=lines, errors=errors, settings=settings,
            created=store.now(), created_at=int(time.time()),
            window_s=int(match.group(1)) * (3600 if match.group(2) == "h" else 86_400), finish=self._finish,
            input_file_id=file.id, completion_window=body["completion_window"], metadata=body.get("metadata"),
            echo=request.headers.get(settings.echo_header, "") if settings.echo_header else "",
        )  # fmt: skip
        store.add(batch, dialect.answer, dialect.error_body)
        store.note("create", batch_id=batch.id, input_file_id=file.id, requests=len(lines))
        if store.lose_reply():
            request.protocol.force_close()  # the batch exists; its reply never arrives
            return web.Response()
        view = self._view(batch)
        if dialect.azure:
            view["status"] = "Validating"  # as Azure first answers
        return web.json_response(view)

    def _deployment_errors(self, lines: list[RequestLine]) -> list[dict[str, Any]]:
        """Azure: every line names one deployment the server serves."""
        known = self.dialect.deployments
        if known is None:
            return []
        errors, models = [], set()
        for number, line in enumerate(lines, start=1):
            model = line.body.get("model") if isinstance(line.body, dict) else None
            models.add(model)
            if model not in known and len(errors) < 100:
                errors.append(
                    {
                        "code": "model_not_found",
                        "message": f"No batch deployment {model!r}.",
                        "param": None,
                        "line": number,
                    }
                )
        if not errors and len(models) > 1:
            errors.append(
                {
                    "code": "inconsistent_model",
                    "message": "Every line of a batch must name the same deployment.",
                    "param": None,
                    "line": None,
                }
            )
        return errors

    def _finish(self, batch: Batch, outcomes: list[LineOutcome]) -> None:
        """Write the output and error files of an ended batch."""
        batch.output_file_id = self._result_file(batch, "output", [o for o in outcomes if o.succeeded])
        batch.error_file_id = self._result_file(batch, "errors", [o for o in outcomes if not o.succeeded])

    def _result_file(self, batch: Batch, kind: str, outcomes: list[LineOutcome]) -> str | None:
        if not outcomes:
            return None
        content = "".join(json.dumps(result_line(o), ensure_ascii=False) + "\n" for o in outcomes).encode()
        file = StoredFile(new_id("file-"), f"{batch.id}_{kind}.jsonl", "batch_output", content, int(time.time()))
        self.store.files[file.id] = file
        return file.id

    def _view(self, batch: Batch) -> dict[str, Any]:
        """The batch object in the protocol's shape."""
        total = len(batch.lines)
        if batch.counts is not None:
            counts: dict[str, Any] = batch.counts
        elif batch.status in ("in_progress", "finalizing"):
            counts = {"total": total, "completed": self.store.progress(batch), "failed": 0}
        elif self.dialect.azure:
            counts = {"total": None, "completed": None, "failed": None}
        else:
            counts = {"total": 0 if batch.errors else total, "completed": 0, "failed": 0}
        times: dict[str, Any] = {
            "created_at": batch.created_at,
            "expires_at": batch.created_at + int(batch.window_s),
            **{name: batch.ended.get(name) for name in _TIMES if name not in ("created_at", "expires_at")},
        }
        if self.dialect.azure:
            times = {name: _iso(value) for name, value in times.items()}
        return {
            "id": batch.id,
            "object": "batch",
            "endpoint": self.dialect.endpoint,
            "errors": {"object": "list", "data": batch.errors} if batch.errors else None,
            "input_file_id": batch.input_file_id,
            "completion_window": batch.completion_window,
            "status": batch.status,
            "output_file_id": batch.output_file_id,
            "error_file_id": batch.error_file_id,
            **{name: times[name] for name in _TIMES},
            "request_counts": counts,
            "metadata": batch.metadata,
        }

    def _batch(self, request: web.Request) -> Batch | None:
        batch = self.store.batches.get(request.match_info["batch_id"])
        if batch is None or batch.protocol != self.dialect.protocol:
            return None
        self.store.advance(batch)
        return batch

    async def _retrieve(self, request: web.Request) -> web.Response:
        batch = self._batch(request)
        if batch is None:
            return self.dialect.error(404, "No such batch.")
        view = self._view(batch)
        self.store.note("poll", batch_id=batch.id, status=batch.status, completed=view["request_counts"]["completed"])
        return web.json_response(view)

    async def _cancel(self, request: web.Request) -> web.Response:
        batch = self._batch(request)
        if batch is None:
            return self.dialect.error(404, "No such batch.")
        if batch.status in TERMINAL:
            return self.dialect.error(409, f"Cannot cancel a batch with status {batch.status!r}.")
        self.store.cancel(batch)
        return web.json_response(self._view(batch))

    async def _list(self, request: web.Request) -> web.Response:
        try:
            limit = int(request.query.get("limit", "20"))
        except ValueError:
            limit = 0
        if not 1 <= limit <= 100:
            return self.dialect.error(400, "'limit' must be a whole number between 1 and 100.")
        mine = [b for b in self.store.batches.values() if b.protocol == self.dialect.protocol]
        newest_first = list(reversed(mine))
        after = request.query.get("after")
        if after is not None:
            ids = [b.id for b in newest_first]
            newest_first = newest_first[ids.index(after) + 1 :] if after in ids else []
        page = newest_first[:limit]
        for batch in page:
            self.store.advance(batch)
        self.store.note("list", after=after)
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


def _iso(unix: int | None) -> str | None:
    """Azure's timestamps: ISO 8601 with a UTC offset."""
    if unix is None:
        return None
    return datetime.datetime.fromtimestamp(unix, datetime.UTC).isoformat(timespec="microseconds")
