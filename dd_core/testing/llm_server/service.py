"""Local OpenAI-compatible chat-completions server for tests and benchmarks.

It speaks the wire protocol of ``POST /v1/chat/completions`` and ``GET /v1/models``
like vLLM or OpenAI, answers deterministically from a hash of the request,
simulates latency with ``asyncio.sleep`` counted from the request's arrival (so concurrent
requests overlap, and the server's own work is part of the latency, as at a real endpoint) and
injects faults configured at runtime through a control API:

- ``POST /_control/faults`` ``{"rules": [...]}`` replaces the fault rules,
  ``DELETE /_control/faults`` clears them (see :class:`FaultRule`);
- ``GET /_control/stats``; ``POST /_control/reset`` clears the stats (not the rules);
- ``POST /_control/latency`` ``{"latency_ms": x, "jitter_ms": y, "sigma": s, "seed": n}``;
- ``/_control/rate_limits``: requests/tokens-per-minute limits and OpenAI's ``x-ratelimit-*``
  headers (see :mod:`dd_core.testing.llm_server.rate_limits`);
- ``/_control/batches``: the Files and Batch APIs' behaviour and call log (see
  :mod:`dd_core.testing.llm_server.openai_batches`).

Latency is ``latency_ms`` plus a jitter in [0, ``jitter_ms``], or, with ``latency_sigma`` > 0,
lognormal with median ``latency_ms`` and that sigma (drawn per request from its key and
``latency_seed``, so a run is reproducible). With ``slots=N`` the server models a bounded batch
as vLLM serves one: N requests are served at once, the rest wait in a FIFO queue, and a
request's latency is its wait plus its service time. ``GET /metrics`` reports
``vllm:num_requests_running`` and ``vllm:num_requests_waiting`` in Prometheus' text format
(``metrics=False`` leaves it out, like a server without metrics).

Run it with :class:`OpenAIServer` (a thread of this process), :class:`OpenAIServerProcess`
(a child process that shares no GIL with the code under test), or
``python -m dd_core.testing.llm_server --port 0`` (prints ``LISTENING <port>``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import math
import random
import statistics
import time
import uuid
from collections import Counter, deque
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from aiohttp import web

from dd_core.testing.llm_server.openai_batches import BatchService
from dd_core.testing.llm_server.rate_limits import ServerRateLimits
from dd_core.testing.llm_server.rate_limits import add_routes as add_rate_limit_routes
from dd_core.testing.llm_server.replies import invalid_reply, json_object_reply, structured_reply, text_reply
from dd_core.testing.llm_server.schema_faker import SchemaError

HOST = "127.0.0.1"
DEFAULT_MODELS = ("test-model",)
FAULT_KINDS = ("status", "hang", "malformed_json", "invalid_structured", "disconnect", "raw")
# Request fields that determine the reply and the request key.
KEY_FIELDS = ("model", "messages", "temperature", "top_p", "max_tokens", "seed", "response_format")
REQUEST_LOG_SIZE = 10_000



def request_key(body: Mapping[str, Any]) -> str:
    """sha256 of the canonical JSON of the request's KEY_FIELDS (absent fields are null)."""
    canonical = json.dumps(
        {name: body.get(name) for name in KEY_FIELDS},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def _text(content: Any) -> str:
    """Text of a message content: a string or a list of OpenAI content parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            part["text"] for part in content if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return ""


def reply_content(body: Mapping[str, Any], key: str) -> str:
    """The assistant content for a validated request: structured, fenced code or plain text."""
    response_format = body.get("response_format") or {}
    if response_format.get("type") == "json_schema":
        return structured_reply(response_format["json_schema"]["schema"], key)
    if response_format.get("type") == "json_object":
        return json_object_reply(key)
    return text_reply([(message["role"], _text(message.get("content"))) for message in body["messages"]], key)


def _invalid_content(body: Mapping[str, Any]) -> str:
    """Content that fails the requested format (see :func:`invalid_reply`)."""
    json_schema = (body.get("response_format") or {}).get("json_schema") or {}
    return invalid_reply(json_schema.get("schema", {}).get("required") or [])


# --- faults --------------------------------------------------------------------------


@dataclasses.dataclass
class FaultRule:
    """One injectable fault, given to the control API as a JSON object with these fields.

    ``kind``: ``status`` (answer ``status`` with an OpenAI error body, plus a
    ``Retry-After`` header when ``retry_after`` seconds is set), ``hang`` (wait
    ``hang_s`` seconds, then answer normally), ``malformed_json`` (200 with a body that
    is not JSON), ``invalid_structured`` (200 whose content fails the requested
    format), ``disconnect`` (close the connection without answering), ``raw`` (answer
    ``status`` (200-599) with ``headers`` and ``body`` repeated ``repeat`` times, where
    ``{echo}`` in the body is replaced by the request's ``echo_header``: a misbehaving server
    of any kind, e.g. one that echoes the Authorization header back).

    A request matches when ``match`` occurs in some message content and ``model``
    equals the request's model (each only if set). Of the matching requests, the rule
    applies to every ``every``-th one, with probability ``probability`` (drawn from
    ``random.Random(seed)``), and to at most ``times`` of them in total.
    """

    kind: str
    status: int = 500
    retry_after: float | None = None
    hang_s: float = 3600.0
    match: str | None = None
    model: str | None = None
    times: int | None = None
    every: int | None = None
    probability: float | None = None
    seed: int = 0
    headers: dict[str, str] | None = None
    body: str = ""
    repeat: int = 1
    echo_header: str | None = None
    matched: int = dataclasses.field(default=0, init=False)
    applied: int = dataclasses.field(default=0, init=False)

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; expected one of {FAULT_KINDS}")
        if not (200 if self.kind == "raw" else 400) <= self.status <= 599:
            raise ValueError(f"fault status must be 4xx or 5xx (200-599 for raw), got {self.status}")
        if not 1 <= self.repeat <= 2**28:
            raise ValueError("'repeat' must be between 1 and 2**28")
        if self.every is not None and self.every < 1:
            raise ValueError("'every' must be at least 1")
        if self.times is not None and self.times < 0:
            raise ValueError("'times' must not be negative")
        if self.probability is not None and not 0 <= self.probability <= 1:
            raise ValueError("'probability' must be between 0 and 1")
        self._rng = random.Random(self.seed)

    @classmethod
    def from_json(cls, data: Any) -> FaultRule:
        if not isinstance(data, dict):
            raise ValueError(f"a fault rule must be a JSON object, got {data!r}")
        try:
            return cls(**data)
        except TypeError as exc:
            raise ValueError(f"bad fault rule {data!r}: {exc}") from None

    def applies(self, model: str, texts: Sequence[str]) -> bool:
        """Whether the rule fires for this request; counts it when it matches."""
        if self.model is not None and model != self.model:
            return False
        if self.match is not None and not any(self.match in text for text in texts):
            return False
        self.matched += 1
        if self.times is not None and self.applied >= self.times:
            return False
        if self.every is not None and self.matched % self.every:
            return False
        if self.probability is not None and self._rng.random() >= self.probability:
            return False
        self.applied += 1
        return True


# --- stats ---------------------------------------------------------------------------


@dataclasses.dataclass
class _Exchange:
    """What the stats keep about one chat request."""

    t_start: float
    status: int | None = None  # None: no response was sent (disconnect, client gone)
    key: str | None = None
    model: str | None = None
    fault: str | None = None
    succeeded: bool = False
    prompt: str | None = None  # the last message's first 200 characters


class _Stats:
    def __init__(self) -> None:
        self.in_flight = 0
        self.running = 0
        self.waiting = 0
        self.reset()

    def reset(self) -> None:
        self.since = self.last_change = time.monotonic()
        self.waiting_seconds = self.running_seconds = 0.0
        self.max_waiting = self.waiting
        self.requests_total = 0
        self.by_status: Counter[str] = Counter()
        self.faults_injected = dict.fromkeys(FAULT_KINDS, 0)
        self.success_keys: Counter[str] = Counter()
        self.max_in_flight = self.in_flight
        self.auth_header_requests = 0
        self.request_log: deque[dict[str, Any]] = deque(maxlen=REQUEST_LOG_SIZE)

    def begin(self, request: web.Request) -> _Exchange:
        self.requests_total += 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        if "Authorization" in request.headers:
            self.auth_header_requests += 1
        return _Exchange(t_start=time.monotonic())

    def queue_change(self, running: int, waiting: int) -> None:
        """Account the time spent at the previous queue depth, then move to the new one."""
        now = time.monotonic()
        self.running_seconds += self.running * (now - self.last_change)
        self.waiting_seconds += self.waiting * (now - self.last_change)
        self.last_change = now
        self.running += running
        self.waiting += waiting
        self.max_waiting = max(self.max_waiting, self.waiting)

    def finish(self, exchange: _Exchange) -> None:
        self.in_flight -= 1
        if exchange.status is not None:
            self.by_status[str(exchange.status)] += 1
        if exchange.succeeded:
            self.success_keys[exchange.key] += 1
        self.request_log.append(
            {
                "t_start": exchange.t_start,
                "t_end": time.monotonic(),
                "status": exchange.status,
                "key": exchange.key,
                "model": exchange.model,
                "fault": exchange.fault,
                "prompt": exchange.prompt,
            }
        )

    def snapshot(self) -> dict[str, Any]:
        return {
            "requests_total": self.requests_total,
            "by_status": dict(self.by_status),
            "faults_injected": dict(self.faults_injected),
            "succeeded": sum(self.success_keys.values()),
            "success_keys": dict(self.success_keys),
            "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight,
            # Time-averaged queue since the last reset (requests waiting for a slot, and served).
            "mean_waiting": self._mean(self.waiting_seconds, self.waiting),
            "mean_running": self._mean(self.running_seconds, self.running),
            "max_waiting": self.max_waiting,
            "auth_header_requests": self.auth_header_requests,
            "request_log": list(self.request_log),
        }

    def _mean(self, accumulated: float, current: int) -> float:
        now = time.monotonic()
        elapsed = now - self.since
        return (accumulated + current * (now - self.last_change)) / elapsed if elapsed > 0 else 0.0


# --- HTTP service --------------------------------------------------------------------

_ERROR_TYPES = {401: ("invalid_request_error", "invalid_api_key"), 429: ("requests", "rate_limit_exceeded")}


def _error_json(status: int, message: str) -> dict[str, Any]:
    default_type = "server_error" if status >= 500 else "invalid_request_error"
    error_type, code = _ERROR_TYPES.get(status, (default_type, None))
    return {"error": {"message": message, "type": error_type, "param": None, "code": code}}


def _error(status: int, message: str, headers: Mapping[str, str] | None = None) -> web.Response:
    """An error response in OpenAI's shape."""
    return web.json_response(_error_json(status, message), status=status, headers=headers)


@web.middleware
async def _openai_errors(request: web.Request, handler: Any) -> web.StreamResponse:
    """Render aiohttp's own HTTP errors (404, 405, 413, ...) in OpenAI's error shape."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _error(exc.status, exc.reason)


async def _json_or_none(request: web.Request) -> Any:
    try:
        return await request.json()
    except ValueError:
        return None


def _request_problem(body: Any) -> str | None:
    """Why a chat request is invalid (answered with 400), or None."""
    if not isinstance(body, dict):
        return "The request body must be a JSON object."
    if not isinstance(body.get("model"), str) or not body["model"]:
        return "'model' is a required string."
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "'messages' must be a non-empty array."
    if not all(isinstance(message, dict) and isinstance(message.get("role"), str) for message in messages):
        return "Each message must be an object with a string 'role'."
    if body.get("stream"):
        return "stream=true is not supported by this test server."
    response_format = body.get("response_format")
    if response_format is None:
        return None
    if not isinstance(response_format, dict) or response_format.get("type") not in ("text", "json_object", "json_schema"):
        return "'response_format.type' must be one of 'text', 'json_object', 'json_schema'."
    json_schema = response_format.get("json_schema")
    if response_format["type"] == "json_schema" and not (
        isinstance(json_schema, dict) and isinstance(json_schema.get("schema"), dict)
    ):
        return "'response_format.json_schema.schema' must be an object."
    return None


def reply_usage(body: Mapping[str, Any], content: str) -> tuple[int, int]:
    """The usage the server reports for a reply: (prompt, completion) tokens, counted as words."""
    prompt_words = sum(len(_text(message.get("content")).split()) for message in body["messages"])
    return max(1, prompt_words), max(1, len(content.split()))


def completion_json(body: Mapping[str, Any], content: str) -> dict[str, Any]:
    """A chat completion in OpenAI's shape (the same online and in a batch's output file)."""
    prompt_tokens, completion_tokens = reply_usage(body, content)
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body["model"],
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def _completion(body: Mapping[str, Any], content: str, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.json_response(completion_json(body, content), headers=headers)


def _seconds_header(seconds: float) -> str:
    return str(int(seconds)) if float(seconds).is_integer() else str(seconds)


@dataclasses.dataclass
class Serving:
    """How the server serves: latency (see the module docstring), batch slots, metrics."""

    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    latency_sigma: float = 0.0
    latency_seed: int = 0
    slots: int | None = None
    metrics: bool = True

    def __post_init__(self) -> None:
        if min(self.latency_ms, self.jitter_ms, self.latency_sigma) < 0 or not all(map(math.isfinite, (self.latency_ms, self.jitter_ms, self.latency_sigma))):
            raise ValueError("latency, jitter and sigma must be finite and not negative")
        if self.slots is not None and self.slots < 1:
            raise ValueError("slots must be at least 1")

    def latency_s(self, key: str) -> float:
        if self.latency_sigma > 0:
            digest = hashlib.sha256(f"{self.latency_seed}/{key}".encode()).digest()
            uniform = (int.from_bytes(digest[:8], "big") + 0.5) / 2**64
            return self.latency_ms / 1000 * math.exp(self.latency_sigma * _STANDARD_NORMAL.inv_cdf(uniform))
        jitter = int(key[:8], 16) / 0xFFFFFFFF * self.jitter_ms
        return (self.latency_ms + jitter) / 1000

    def options(self) -> list[str]:
        """The same settings as command-line options."""
        args = ["--latency-ms", str(self.latency_ms), "--jitter-ms", str(self.jitter_ms), "--latency-sigma", str(self.latency_sigma), "--latency-seed", str(self.latency_seed)]
        if self.slots is not None:
            args += ["--slots", str(self.slots)]
        return args if self.metrics else [*args, "--no-metrics"]


_STANDARD_NORMAL = statistics.NormalDist()


class ChatService:
    """Request handlers and the mutable state (latency, fault rules, stats) of one server."""

    def __init__(
        self,
        *,
        serving: Serving | None = None,
        models: Iterable[str] = DEFAULT_MODELS,
        api_key: str | None = None,
    ):
        self.serving = serving or Serving()
        self.models = tuple(models)
        self.api_key = api_key
        self.rules: list[FaultRule] = []
        self.stats = _Stats()
        self._slots = asyncio.Semaphore(self.serving.slots) if self.serving.slots else None
        self.rate_limits = ServerRateLimits()
        self.batches = BatchService(self.reply_for_batch, self._authorized, _error)

    def build_app(self) -> web.Application:
        app = web.Application(middlewares=[_openai_errors], client_max_size=64 * 2**20)
        app.add_routes(
            [
                web.post("/v1/chat/completions", self._chat_completions),
                web.get("/v1/models", self._list_models),
                web.post("/_control/faults", self._set_faults),
                web.delete("/_control/faults", self._clear_faults),
                web.get("/_control/stats", self._get_stats),
                web.post("/_control/reset", self._reset_stats),
                web.post("/_control/latency", self._set_latency),
            ]
        )
        add_rate_limit_routes(app, self.rate_limits, _error)
        self.batches.add_routes(app)
        if self.serving.metrics:
            app.add_routes([web.get("/metrics", self._metrics)])
        return app

    async def _metrics(self, request: web.Request) -> web.Response:
        """vLLM's queue gauges in Prometheus' text format (one label set per listed model)."""
        running, waiting = (self.stats.running, self.stats.waiting) if self._slots else (self.stats.in_flight, 0)
        lines = []
        for name, value, help_text in (
            ("vllm:num_requests_running", running, "Number of requests in model execution batches."),
            ("vllm:num_requests_waiting", waiting, "Number of requests waiting to be processed."),
        ):
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge"]
            lines += [f'{name}{{model_name="{model}"}} {float(value if i == 0 else 0)}' for i, model in enumerate(self.models)]
        return web.Response(text="\n".join(lines) + "\n", content_type="text/plain")

    def _authorized(self, request: web.Request) -> bool:
        return self.api_key is None or request.headers.get("Authorization") == f"Bearer {self.api_key}"

    async def _list_models(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return _error(401, "Incorrect API key provided.")
        data = [{"id": name, "object": "model", "created": 0, "owned_by": "dd-test"} for name in self.models]
        return web.json_response({"object": "list", "data": data})

    async def _chat_completions(self, request: web.Request) -> web.StreamResponse:
        exchange = self.stats.begin(request)
        try:
            response = await self._answer(request, exchange)
            if exchange.fault != "disconnect":
                exchange.status = response.status
            return response
        finally:
            self.stats.finish(exchange)

    async def _answer(self, request: web.Request, exchange: _Exchange) -> web.StreamResponse:
        if not self._authorized(request):
            return _error(401, "Incorrect API key provided.")
        body = await _json_or_none(request)
        problem = "We could not parse the JSON body of your request." if body is None else _request_problem(body)
        if problem:
            return _error(400, problem)
        exchange.key, exchange.model = request_key(body), body["model"]
        exchange.prompt = _text(body["messages"][-1].get("content"))[:200]
        try:
            content = reply_content(body, exchange.key)
        except SchemaError as exc:
            return _error(400, f"Unsupported response_format schema: {exc}")
        admitted, limit_headers = self.rate_limits.admit(exchange.t_start, sum(reply_usage(body, content)))
        if not admitted:
            return _error(429, "Rate limit reached for requests or tokens per minute.", limit_headers)
        rule = self._pick_fault(body)
        await self._serve(exchange)
        if rule is None:
            exchange.succeeded = True
            return _completion(body, content, limit_headers)
        exchange.fault = rule.kind
        return await self._inject(rule, request, body, exchange, content)

    def reply_for_batch(self, body: Any) -> tuple[int, dict[str, Any]]:
        """(status, JSON body) for one request line of a batch: the online reply, or the
        fault rule's answer for the kinds that exist in a batch (``status``, ``invalid_structured``)."""
        problem = _request_problem(body)
        if problem:
            return 400, _error_json(400, problem)
        try:
            content = reply_content(body, request_key(body))
        except SchemaError as exc:
            return 400, _error_json(400, f"Unsupported response_format schema: {exc}")
        rule = self._pick_fault(body)
        if rule is not None and rule.kind == "status":
            return rule.status, _error_json(rule.status, f"Injected fault: HTTP {rule.status}.")
        if rule is not None and rule.kind == "invalid_structured":
            content = _invalid_content(body)
        return 200, completion_json(body, content)

    def _pick_fault(self, body: Mapping[str, Any]) -> FaultRule | None:
        texts = [_text(message.get("content")) for message in body["messages"]]
        rule = next((rule for rule in self.rules if rule.applies(body["model"], texts)), None)
        if rule is not None:
            self.stats.faults_injected[rule.kind] += 1
        return rule

    async def _serve(self, exchange: _Exchange) -> None:
        """Wait out the request's latency: counted from its arrival (so the server's own work is
        inside it), or with slots, its wait for a slot and then its service time."""
        latency = self.serving.latency_s(exchange.key)
        if self._slots is None:
            await asyncio.sleep(max(0.0, exchange.t_start + latency - time.monotonic()))
            return
        self.stats.queue_change(0, 1)
        try:
            await self._slots.acquire()
        finally:
            self.stats.queue_change(0, -1)
        self.stats.queue_change(1, 0)
        try:
            await asyncio.sleep(latency)
        finally:
            self.stats.queue_change(-1, 0)
            self._slots.release()

    async def _inject(
        self, rule: FaultRule, request: web.Request, body: Mapping[str, Any], exchange: _Exchange, content: str
    ) -> web.StreamResponse:
        if rule.kind == "status":
            headers = None if rule.retry_after is None else {"Retry-After": _seconds_header(rule.retry_after)}
            return _error(rule.status, f"Injected fault: HTTP {rule.status}.", headers)
        if rule.kind == "hang":
            await asyncio.sleep(rule.hang_s)
            exchange.succeeded = True
            return _completion(body, content)
        if rule.kind == "malformed_json":
            return web.Response(text='{"id": "chatcmpl-truncated", "choices": [{"index": 0, "mess', content_type="application/json")
        if rule.kind == "invalid_structured":
            return _completion(body, _invalid_content(body))
        if rule.kind == "raw":
            echo = request.headers.get(rule.echo_header, "") if rule.echo_header else ""
            text = rule.body.replace("{echo}", echo) * rule.repeat
            headers = {"Content-Type": "application/json", **(rule.headers or {})}
            return web.Response(status=rule.status, body=text.encode(), headers=headers)
        # "disconnect": close the socket; aiohttp then fails to write this response and drops it.
        request.protocol.force_close()
        return web.Response()

    async def _set_faults(self, request: web.Request) -> web.Response:
        body = await _json_or_none(request)
        rules = body.get("rules") if isinstance(body, dict) else None
        if not isinstance(rules, list):
            return _error(400, 'Expected a JSON body {"rules": [...]}.')
        try:
            self.rules = [FaultRule.from_json(rule) for rule in rules]
        except ValueError as exc:
            return _error(400, str(exc))
        return web.json_response({"rules": len(self.rules)})

    async def _clear_faults(self, request: web.Request) -> web.Response:
        self.rules = []
        return web.json_response({"rules": 0})

    async def _get_stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.stats.snapshot())

    async def _reset_stats(self, request: web.Request) -> web.Response:
        self.stats.reset()
        return web.json_response({"reset": True})

    async def _set_latency(self, request: web.Request) -> web.Response:
        body = await _json_or_none(request)
        try:
            latency_ms, jitter_ms = float(body["latency_ms"]), float(body.get("jitter_ms", 0))
            sigma, seed = float(body.get("sigma", 0)), int(body.get("seed", self.serving.latency_seed))
        except (TypeError, KeyError, ValueError, AttributeError):
            return _error(400, 'Expected a JSON body {"latency_ms": x, "jitter_ms": y, "sigma": s, "seed": n}.')
        try:
            serving = dataclasses.replace(self.serving, latency_ms=latency_ms, jitter_ms=jitter_ms, latency_sigma=sigma, latency_seed=seed)
        except ValueError:
            return _error(400, "Latency, jitter and sigma must be finite and not negative.")
        self.serving = serving
        return web.json_response({"latency_ms": latency_ms, "jitter_ms": jitter_ms, "sigma": sigma, "seed": seed})


async def start_serving(service: ChatService, host: str, port: int) -> tuple[web.AppRunner, int]:
    """Listen on host:port (0 = a free port); return the runner and the bound port."""
    # handler_cancellation: a handler (e.g. a "hang") is cancelled when its client goes away.
    runner = web.AppRunner(service.build_app(), access_log=None, handler_cancellation=True, shutdown_timeout=1.0)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner, runner.addresses[0][1]
