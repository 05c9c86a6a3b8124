"""The batches of the local test server, whatever API made them: settings, lifecycle, injected
failures, the call log, and the control API ``/_control/batches``.

A batch's requests are answered exactly as the online endpoint of its protocol answers the same
body (same content, same usage; fault rules of kind ``status`` and ``invalid_structured`` apply
too), so a dataset made through batches equals one made online. Its state is derived from the
clock whenever it is read (``advance``), so a batch also progresses while no client is
connected: ``validating``, ``in_progress`` (the share done grows with time), ``finalizing``, then
``completed``, ``expired``, ``failed`` (its input was invalid) or ``cancelled``. Each request's
outcome is kept neutrally (``LineOutcome``) and written out, in an order that differs from the
input's, by the protocol that made the batch (``Batch.finish``): OpenAI's and Azure's output and
error files (``openai_batches``), Anthropic's results file (``anthropic_batches``).

Control API: ``POST /_control/batches`` sets :class:`BatchSettings` for batches created from then
on; ``GET /_control/batches`` returns counts (uploads, creates, polls...), each batch's request
keys, and the log of every batch API call; ``DELETE /_control/batches`` forgets files, batches and
the log (not the settings). ``POST /_control/batches/clock`` drives the clock batches move by (see
``batch_clock``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import math
import random
import time
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

import aiohttp
from aiohttp import web

from dd_core.testing.llm_server.batch_clock import BatchClock, clock_route

TERMINAL = ("completed", "failed", "expired", "cancelled")
#: Lines answered between two yields to the event loop while a batch is processed.
_CHUNK = 200

#: Answers one request body: (HTTP status, JSON body), as the online endpoint would.
Answer = Callable[[Any], tuple[int, dict[str, Any]]]
#: The JSON error body of an injected failure: (status, message) -> body.
ErrorBody = Callable[[int, str], dict[str, Any]]


@dataclasses.dataclass(frozen=True)
class BatchSettings:
    """How batches created from now on behave (a JSON object to ``POST /_control/batches``)."""

    validating_s: float = 0.0
    #: Time in ``in_progress``; the share of requests done grows evenly over it.
    processing_s: float = 0.0
    finalizing_s: float = 0.0
    #: Share of requests answered with ``failure_status``, chosen from a hash of (``seed``,
    #: request body); one request body fails at most ``failures_per_request`` times over the
    #: server's life (null: every time), so a retry in a later batch can succeed.
    failure_share: float = 0.0
    failure_status: int = 500
    #: With ``failure_code`` (e.g. ``"server_error"``, ``"invalid_request"``) a failed request is a
    #: line-level error of that code (OpenAI's ``{"error": {"code": ...}}``, Anthropic's ``errored``
    #: result with that error type) instead of an HTTP status.
    failure_code: str | None = None
    failures_per_request: int | None = 1
    #: Above 0 the batch ends ``expired``: this share of its requests (chosen like failures, and
    #: like them at most ``failures_per_request`` times each) was not run, the rest was.
    expire_share: float = 0.0
    seed: int = 0
    #: Requests one batch may hold (null: the protocol's own limit).
    max_requests: int | None = None
    #: The next ``fail_calls`` batch API calls are answered ``fail_status`` (transient trouble).
    fail_calls: int = 0
    fail_status: int = 503
    #: The next ``lose_create_replies`` creates make their batch, then drop the connection unanswered.
    lose_create_replies: int = 0
    #: Serve result files cut off in the middle of a line (a download cut short, yet answered 200).
    cut_results: bool = False
    #: A hostile server: every answered request's content starts with the value of this header of
    #: the call that created the batch (e.g. the API key).
    echo_header: str | None = None
    #: Anthropic: a hostile server gives a ``results_url`` under this base (another host).
    results_url_base: str | None = None
    #: A real model server's OpenAI base URL (``http://127.0.0.1:8080/v1``): each line of an OpenAI
    #: batch is answered by its ``/chat/completions`` (``upstream_parallel`` at a time) instead of
    #: by this server.
    upstream_url: str | None = None
    upstream_parallel: int = 4

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
        if self.max_requests is not None and not (isinstance(self.max_requests, int) and self.max_requests >= 1):
            raise ValueError("'max_requests' must be a whole number >= 1 or null")
        if self.echo_header is not None and not isinstance(self.echo_header, str):
            raise ValueError("'echo_header' must be a header name or null")
        if self.failure_code is not None and not (isinstance(self.failure_code, str) and self.failure_code):
            raise ValueError(f"'failure_code' must be a non-empty string or null, got {self.failure_code!r}")
        if self.upstream_url is not None and not (
            isinstance(self.upstream_url, str) and self.upstream_url.startswith(("http://", "https://"))
        ):
            raise ValueError(f"'upstream_url' must be an http(s) URL or null, got {self.upstream_url!r}")
        if not (isinstance(self.upstream_parallel, int) and self.upstream_parallel >= 1):
            raise ValueError("'upstream_parallel' must be a whole number >= 1")

    @classmethod
    def from_json(cls, data: Any) -> BatchSettings:
        if not isinstance(data, dict):
            raise ValueError(f"batch settings must be a JSON object, got {data!r}")
        try:
            return cls(**data)
        except TypeError as exc:
            raise ValueError(f"bad batch settings {data!r}: {exc}") from None


async def _answer_upstream(outcomes: list[LineOutcome], url: str, parallel: int, error_body: ErrorBody) -> None:
    """Answer each ``upstream`` outcome by a real server's ``/chat/completions``, in place."""
    gate = asyncio.Semaphore(parallel)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None)) as session:

        async def answer(outcome: LineOutcome) -> None:
            async with gate, session.post(url.rstrip("/") + "/chat/completions", json=outcome.line.body) as response:
                try:
                    body = await response.json(content_type=None)
                except ValueError:
                    body = error_body(502, "The upstream server answered with something that is not JSON.")
                outcome.kind, outcome.status, outcome.body = "answered", response.status, body

        await asyncio.gather(*(answer(o) for o in outcomes if o.kind == "upstream"))


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def new_id(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:24]}"


def share(seed: int, purpose: str, body: Any) -> float:
    """A number in [0, 1) fixed by (seed, purpose, request body)."""
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    digest = hashlib.sha256(f"{seed}/{purpose}/{text}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def body_key(body: Any) -> str:
    """sha256 of the canonical body: which request this is, across batches."""
    return hashlib.sha256(
        json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()
    ).hexdigest()


@dataclasses.dataclass
class RequestLine:
    custom_id: str
    body: Any
    key: str


@dataclasses.dataclass
class LineOutcome:
    """What became of one request: ``answered`` (``status`` and the JSON ``body`` of the answer),
    ``errored`` (a line-level error of ``code``), ``expired`` (not run before the batch ended) or
    ``cancelled`` (not run: the batch was cancelled)."""

    line: RequestLine
    kind: str
    status: int = 200
    body: dict[str, Any] | None = None
    code: str | None = None

    @property
    def succeeded(self) -> bool:
        return self.kind == "answered" and self.status == 200


@dataclasses.dataclass
class Batch:
    id: str
    protocol: str  # which API made it: "openai", "azure", "anthropic"
    lines: list[RequestLine]
    errors: list[dict[str, Any]]  # validation errors: the batch fails
    settings: BatchSettings
    created: float  # monotonic
    created_at: int  # unix seconds
    window_s: float
    #: Writes the outcomes out (files, a results file) once the batch ends.
    finish: Callable[[Batch, list[LineOutcome]], None]
    input_file_id: str = ""
    completion_window: str = "24h"
    metadata: dict[str, str] | None = None
    echo: str = ""
    outcomes: list[LineOutcome] | None = None  # one per line once processed
    cancelled_at: float | None = None
    status: str = "validating"
    counts: dict[str, int] | None = None  # final request counts, once ended
    ended: dict[str, int] = dataclasses.field(default_factory=dict)  # event -> unix time
    output_file_id: str | None = None
    error_file_id: str | None = None
    results: bytes | None = None  # Anthropic's results file


class BatchStore:
    """Every protocol's batches, their lifecycle, and the log of every batch API call."""

    def __init__(self) -> None:
        self._clock = BatchClock()
        self.settings = BatchSettings()
        self.failures: Counter[tuple[str, str]] = Counter()  # (fault, request key) -> injected so far
        self._fail_calls = self._lose_creates = 0
        self.reset()

    def reset(self) -> None:
        self.files: dict[str, Any] = {}
        self.batches: dict[str, Batch] = {}
        self.log: list[dict[str, Any]] = []
        self.counts: Counter[str] = Counter()
        self._tasks: set[asyncio.Task] = set()

    def note(self, op: str, **fields: Any) -> None:
        self.counts[op] += 1
        self.log.append({"t": self._clock(), "op": op, **fields})

    def now(self) -> float:
        return self._clock()

    def failing_call(self, path: str) -> int | None:
        """The status to answer this call with while injected transient failures remain, else None."""
        if not self._fail_calls:
            return None
        self._fail_calls -= 1
        self.note("failed_call", path=path, status=self.settings.fail_status)
        return self.settings.fail_status

    def lose_reply(self) -> bool:
        """Whether this create's reply is to be lost (its batch exists)."""
        if not self._lose_creates:
            return False
        self._lose_creates -= 1
        return True

    def add(self, batch: Batch, answer: Answer, error_body: ErrorBody) -> None:
        """Keep a new batch and, when its input is valid, start answering its requests."""
        self.batches[batch.id] = batch
        if not batch.errors:
            task = asyncio.ensure_future(self._process(batch, answer, error_body))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _process(self, batch: Batch, answer: Answer, error_body: ErrorBody) -> None:
        """Answer every line (yielding to the loop now and then); reveal them when the clock says."""
        settings, outcomes = batch.settings, []
        for number, line in enumerate(batch.lines):
            if number and number % _CHUNK == 0:
                await asyncio.sleep(0)
            if self._inject(settings, line, "expire", settings.expire_share):
                outcomes.append(LineOutcome(line, "expired"))
            elif self._inject(settings, line, "fail", settings.failure_share):
                if settings.failure_code:
                    outcomes.append(LineOutcome(line, "errored", code=settings.failure_code))
                else:
                    message = f"Injected batch failure: HTTP {settings.failure_status}."
                    status = settings.failure_status
                    outcomes.append(LineOutcome(line, "answered", status, error_body(status, message)))
            elif settings.upstream_url and batch.protocol != "anthropic":
                outcomes.append(LineOutcome(line, "upstream"))  # answered below, by the real server
            else:
                status, body = answer(line.body)
                if status == 200 and batch.echo:
                    _echo(body, batch.echo)
                outcomes.append(LineOutcome(line, "answered", status, body))
        if any(o.kind == "upstream" for o in outcomes):
            await _answer_upstream(outcomes, settings.upstream_url, settings.upstream_parallel, error_body)
        batch.outcomes = outcomes

    def _inject(self, settings: BatchSettings, line: RequestLine, fault: str, rate: float) -> bool:
        """Whether ``fault`` ("fail", "expire") strikes this request now (see ``BatchSettings``)."""
        if not rate or share(settings.seed, fault, line.body) >= rate:
            return False
        limit = settings.failures_per_request
        if limit is not None and self.failures[fault, line.key] >= limit:
            return False
        self.failures[fault, line.key] += 1
        return True

    def advance(self, batch: Batch) -> None:
        """Move the batch to the state the clock puts it in; write its results when it ends."""
        if batch.status in TERMINAL:
            return
        if batch.cancelled_at is not None:
            if batch.outcomes is not None or batch.errors:
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
        if elapsed < s.validating_s + s.processing_s or batch.outcomes is None:
            return
        batch.status = "finalizing"
        batch.ended.setdefault("finalizing_at", int(time.time()))
        if elapsed < s.validating_s + s.processing_s + s.finalizing_s:
            return
        self._end(batch, "expired" if s.expire_share else "completed")

    def cancel(self, batch: Batch) -> None:
        if batch.cancelled_at is None:
            batch.cancelled_at = self._clock()
            batch.ended["cancelling_at"] = int(time.time())
        self.note("cancel", batch_id=batch.id)
        batch.status = "cancelling"
        if batch.outcomes is not None:
            self._end(batch, "cancelled")

    def _end(self, batch: Batch, status: str) -> None:
        batch.status = status
        batch.ended[f"{status}_at"] = int(time.time())
        if status == "failed":
            return
        outcomes = list(batch.outcomes or [])
        if status == "cancelled":
            done = self.progress(batch, batch.cancelled_at)
            outcomes = outcomes[:done] + [LineOutcome(line, "cancelled") for line in batch.lines[done:]]
        random.Random(batch.id).shuffle(outcomes)  # results come back in another order than sent
        answered = sum(o.succeeded for o in outcomes)
        batch.counts = {"total": len(batch.lines), "completed": answered, "failed": len(outcomes) - answered}
        batch.finish(batch, outcomes)

    def progress(self, batch: Batch, at: float | None = None) -> int:
        """How many of the batch's requests count as run at monotonic time ``at`` (default now)."""
        s = batch.settings
        elapsed = (self._clock() if at is None else at) - batch.created - s.validating_s
        if elapsed <= 0 or batch.outcomes is None:
            return 0
        done = 1.0 if s.processing_s == 0 else min(1.0, elapsed / s.processing_s)
        return int(len(batch.lines) * done)

    def content(self, data: bytes) -> bytes:
        """A result file as served: whole, or cut in the middle of a line (``cut_results``)."""
        if not self.settings.cut_results or not data:
            return data
        return data[: max(1, len(data) // 2 - 7)]

    def add_control_routes(self, app: web.Application, error: Callable[[int, str], web.Response]) -> None:
        async def set_settings(request: web.Request) -> web.Response:
            try:
                self.settings = BatchSettings.from_json(await request.json())
            except ValueError as exc:  # also a body that is not JSON
                return error(400, str(exc))
            self._fail_calls, self._lose_creates = self.settings.fail_calls, self.settings.lose_create_replies
            return web.json_response(dataclasses.asdict(self.settings))

        async def stats(request: web.Request) -> web.Response:
            for batch in self.batches.values():
                self.advance(batch)
            return web.json_response(self.snapshot())

        async def reset(request: web.Request) -> web.Response:
            for task in self._tasks:
                task.cancel()
            self.reset()
            self.failures.clear()
            return web.json_response({"reset": True})

        app.add_routes(
            [
                web.post("/_control/batches", set_settings),
                web.get("/_control/batches", stats),
                web.delete("/_control/batches", reset),
                clock_route(self._clock, error),
            ]
        )

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
                    "protocol": b.protocol,
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


def _echo(body: dict[str, Any], text: str) -> None:
    """Write ``text`` into an answer's content (a hostile server echoing a secret)."""
    for choice in body.get("choices") or []:
        message = choice.get("message") or {}
        if isinstance(message.get("content"), str):
            message["content"] = f"{text} {message['content']}"
    for block in body.get("content") or []:
        if block.get("type") == "text":
            block["text"] = f"{text} {block['text']}"
        elif block.get("type") == "tool_use" and isinstance(block.get("input"), dict):
            block["input"] = {**block["input"], "echo": text}
