"""Anthropic's Message Batches API in the local test server (the batches' lifecycle is
``batch_lifecycle``'s):

- ``POST /v1/messages/batches`` ``{"requests": [{"custom_id", "params"}, ...]}``: up to 100,000
  requests and 256 MB (413 ``request_too_large`` above), ``custom_id`` 1-64 letters, digits,
  ``_`` or ``-``, unique in the batch. ``params`` are checked as the batch runs: an invalid one
  ends ``errored`` with an ``invalid_request_error``, as the API does;
- ``GET /v1/messages/batches/{id}``: ``processing_status`` ``in_progress``, ``canceling`` or
  ``ended``; ``request_counts`` (``processing`` until the batch ends, then ``succeeded``,
  ``errored``, ``canceled``, ``expired``); ``results_url`` once ended;
- ``GET /v1/messages/batches/{id}/results``: JSONL, one line per request in another order than
  sent, each ``{"custom_id", "result": {"type": "succeeded", "message"} | {"type": "errored",
  "error"} | {"type": "canceled"} | {"type": "expired"}}``;
- ``GET /v1/messages/batches`` (newest first; ``limit`` up to 1,000, ``after_id``, ``before_id``;
  ``has_more``, ``first_id``, ``last_id``), ``POST .../{id}/cancel``, ``DELETE .../{id}`` (ended only).

The key in ``x-api-key`` and an ``anthropic-version`` header, as for ``/v1/messages``.
``BatchSettings.results_url_base`` puts ``results_url`` on another server (a hostile one).
"""

from __future__ import annotations

import datetime
import json
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from dd_core.testing.llm_server.anthropic_chat import AnthropicMessages, error_json, error_response, version_refusal
from dd_core.testing.llm_server.batch_lifecycle import (
    TERMINAL,
    Answer,
    Batch,
    BatchStore,
    LineOutcome,
    RequestLine,
    body_key,
    new_id,
)

PATH = "/v1/messages/batches"
MAX_REQUESTS = 100_000
MAX_BYTES = 256 * 2**20
CUSTOM_ID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
WINDOW_S = 24 * 3600
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class MessageBatchesAPI:
    def __init__(
        self, store: BatchStore, messages: AnthropicMessages, answer: Answer, api_key: Callable[[], str | None]
    ):
        self.store = store
        self.messages = messages
        self._answer = answer
        self._api_key = api_key

    def add_routes(self, app: web.Application) -> None:
        api = self._api
        app.add_routes(
            [
                web.post(PATH, api(self._create)),
                web.get(PATH, api(self._list)),
                web.get(f"{PATH}/{{batch_id}}", api(self._retrieve)),
                web.post(f"{PATH}/{{batch_id}}/cancel", api(self._cancel)),
                web.get(f"{PATH}/{{batch_id}}/results", api(self._results)),
                web.delete(f"{PATH}/{{batch_id}}", api(self._delete)),
            ]
        )

    def _api(self, handler: Handler) -> Handler:
        async def handle(request: web.Request) -> web.StreamResponse:
            if not self.messages.authorized(request, self._api_key()):
                return error_response(401, "invalid x-api-key")
            refused = version_refusal(request)
            if refused is not None:
                return refused
            failing = self.store.failing_call(request.path)
            if failing is not None:
                return error_response(failing, f"Injected fault: HTTP {failing}.")
            return await handler(request)

        return handle

    async def _create(self, request: web.Request) -> web.Response:
        store = self.store
        if request.content_length is not None and request.content_length > MAX_BYTES:
            return error_response(413, f"Request exceeds the maximum size of {MAX_BYTES:,} bytes.")
        try:
            body = json.loads(await request.read())
        except ValueError:
            return error_response(400, "The request body is not valid JSON.")
        lines, problem = _requests(body, store.settings.max_requests or MAX_REQUESTS)
        if problem:
            return error_response(400, problem)
        settings = store.settings
        batch = Batch(
            id=new_id("msgbatch_"), protocol="anthropic", lines=lines, errors=[], settings=settings,
            created=store.now(), created_at=int(time.time()), window_s=WINDOW_S, finish=self._finish,
            echo=request.headers.get(settings.echo_header, "") if settings.echo_header else "",
        )  # fmt: skip
        store.add(batch, self._answer, error_json)
        store.note("create", batch_id=batch.id, requests=len(lines))
        if store.lose_reply():
            request.protocol.force_close()  # the batch exists; its reply never arrives
            return web.Response()
        return web.json_response(self._view(batch, request))

    def _finish(self, batch: Batch, outcomes: list[LineOutcome]) -> None:
        batch.results = "".join(json.dumps(_result(o), ensure_ascii=False) + "\n" for o in outcomes).encode()

    def _view(self, batch: Batch, request: web.Request) -> dict[str, Any]:
        ended = batch.status in TERMINAL
        if ended:
            kinds = [_kind(o) for o in batch.outcomes or []] if batch.results is not None else []
            counts = {name: kinds.count(name) for name in ("succeeded", "errored", "canceled", "expired")}
            counts["processing"] = 0
        else:
            counts = {"processing": len(batch.lines), "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0}
        base = self.store.settings.results_url_base or f"{request.scheme}://{request.host}"
        cancelling = batch.ended.get("cancelling_at")
        return {
            "id": batch.id,
            "type": "message_batch",
            "processing_status": "ended" if ended else ("canceling" if batch.status == "cancelling" else "in_progress"),
            "request_counts": counts,
            "ended_at": _iso(batch.ended.get(f"{batch.status}_at")) if ended else None,
            "created_at": _iso(batch.created_at),
            "expires_at": _iso(batch.created_at + WINDOW_S),
            "archived_at": None,
            "cancel_initiated_at": _iso(cancelling) if cancelling else None,
            "results_url": f"{base.rstrip('/')}{PATH}/{batch.id}/results" if ended else None,
        }

    def _batch(self, request: web.Request) -> Batch | None:
        batch = self.store.batches.get(request.match_info["batch_id"])
        if batch is None or batch.protocol != "anthropic":
            return None
        self.store.advance(batch)
        return batch

    async def _retrieve(self, request: web.Request) -> web.Response:
        batch = self._batch(request)
        if batch is None:
            return error_response(404, "No such message batch.")
        view = self._view(batch, request)
        self.store.note("poll", batch_id=batch.id, status=view["processing_status"])
        return web.json_response(view)

    async def _results(self, request: web.Request) -> web.Response:
        batch = self._batch(request)
        if batch is None:
            return error_response(404, "No such message batch.")
        if batch.results is None:
            return error_response(404, f"Message batch {batch.id} has not ended; its results are not available yet.")
        self.store.note("content", batch_id=batch.id)
        return web.Response(body=self.store.content(batch.results), content_type="application/binary")

    async def _cancel(self, request: web.Request) -> web.Response:
        batch = self._batch(request)
        if batch is None:
            return error_response(404, "No such message batch.")
        if batch.status not in TERMINAL:
            self.store.cancel(batch)
        return web.json_response(self._view(batch, request))

    async def _delete(self, request: web.Request) -> web.Response:
        batch = self._batch(request)
        if batch is None:
            return error_response(404, "No such message batch.")
        if batch.status not in TERMINAL:
            return error_response(400, "A message batch can be deleted only once it has ended.")
        del self.store.batches[batch.id]
        return web.json_response({"id": batch.id, "type": "message_batch_deleted"})

    async def _list(self, request: web.Request) -> web.Response:
        try:
            limit = int(request.query.get("limit", "20"))
        except ValueError:
            limit = 0
        if not 1 <= limit <= 1000:
            return error_response(400, "limit: must be a whole number between 1 and 1000.")
        newest_first = [b for b in reversed(self.store.batches.values()) if b.protocol == "anthropic"]
        ids = [b.id for b in newest_first]
        after, before = request.query.get("after_id"), request.query.get("before_id")
        if after is not None:
            newest_first = newest_first[ids.index(after) + 1 :] if after in ids else []
        elif before is not None:
            newest_first = newest_first[: ids.index(before)][-limit:] if before in ids else []
        page = newest_first[:limit]
        for batch in page:
            self.store.advance(batch)
        self.store.note("list", after=after)
        data = [self._view(b, request) for b in page]
        return web.json_response(
            {
                "data": data,
                "has_more": len(newest_first) > limit,
                "first_id": data[0]["id"] if data else None,
                "last_id": data[-1]["id"] if data else None,
            }
        )


def _requests(body: Any, max_requests: int) -> tuple[list[RequestLine], str | None]:
    requests = body.get("requests") if isinstance(body, dict) else None
    if not isinstance(requests, list) or not requests:
        return [], "requests: a non-empty list of requests is required"
    if len(requests) > max_requests:
        return [], f"requests: a batch holds at most {max_requests:,} requests, got {len(requests):,}"
    lines, seen = [], set()
    for number, item in enumerate(requests):
        custom_id = item.get("custom_id") if isinstance(item, dict) else None
        if not isinstance(custom_id, str) or not CUSTOM_ID.match(custom_id):
            return [], f"requests.{number}.custom_id: 1 to 64 letters, digits, '_' or '-'"
        if custom_id in seen:
            return [], f"requests.{number}.custom_id: {custom_id!r} is used more than once"
        if not isinstance(item.get("params"), dict):
            return [], f"requests.{number}.params: an object is required"
        seen.add(custom_id)
        lines.append(RequestLine(custom_id, item["params"], body_key(item["params"])))
    return lines, None


def _kind(outcome: LineOutcome) -> str:
    if outcome.kind == "answered":
        return "succeeded" if outcome.status == 200 else "errored"
    if outcome.kind == "errored":
        return "errored"
    return "expired" if outcome.kind == "expired" else "canceled"


def _result(outcome: LineOutcome) -> dict[str, Any]:
    kind = _kind(outcome)
    result: dict[str, Any] = {"type": kind}
    if kind == "succeeded":
        result["message"] = outcome.body
    elif kind == "errored":
        result["error"] = outcome.body or {
            "type": "error",
            "error": {"type": outcome.code, "message": "Injected batch failure."},
        }
    return {"custom_id": outcome.line.custom_id, "result": result}


def _iso(unix: int | None) -> str | None:
    if unix is None:
        return None
    return datetime.datetime.fromtimestamp(unix, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
