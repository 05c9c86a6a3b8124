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
import time
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from aiohttp import web

from dd_core.testing.llm_server.faults import FaultRule, Faults
from dd_core.testing.llm_server.latency import Latency, Serving
from dd_core.testing.llm_server.openai_batches import BatchService
from dd_core.testing.llm_server.rate_limits import ServerRateLimits
from dd_core.testing.llm_server.rate_limits import add_routes as add_rate_limit_routes
from dd_core.testing.llm_server.replies import invalid_reply, json_object_reply, structured_reply, text_reply
from dd_core.testing.llm_server.schema_faker import SchemaError
from dd_core.testing.llm_server.stats import Exchange, Stats, vllm_metrics

HOST = "127.0.0.1"
DEFAULT_MODELS = ("test-model",)
# Request fields that determine the reply and the request key.
KEY_FIELDS = ("model", "messages", "temperature", "top_p", "max_tokens", "seed", "response_format")


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


class ChatService:
    """Request handlers and the mutable state (latency, fault rules, stats) of one server."""

    def __init__(
        self,
        *,
        serving: Serving | None = None,
        models: Iterable[str] = DEFAULT_MODELS,
        api_key: str | None = None,
    ):
        self.models = tuple(models)
        self.api_key = api_key
        self.faults = Faults()
        self.stats = Stats()
        self.latency = Latency(serving or Serving(), self.stats)
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
        if self.latency.serving.metrics:
            app.add_routes([web.get("/metrics", self._metrics)])
        return app

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.Response(text=vllm_metrics(self.models, *self.latency.queue()), content_type="text/plain")

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

    async def _answer(self, request: web.Request, exchange: Exchange) -> web.StreamResponse:
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
        await self.latency.wait(exchange)
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
        rule = self.faults.pick(body["model"], texts)
        if rule is not None:
            self.stats.faults_injected[rule.kind] += 1
        return rule

    async def _inject(
        self, rule: FaultRule, request: web.Request, body: Mapping[str, Any], exchange: Exchange, content: str
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
            self.faults.rules = [FaultRule.from_json(rule) for rule in rules]
        except ValueError as exc:
            return _error(400, str(exc))
        return web.json_response({"rules": len(self.faults.rules)})

    async def _clear_faults(self, request: web.Request) -> web.Response:
        self.faults.rules = []
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
            sigma, seed = float(body.get("sigma", 0)), int(body.get("seed", self.latency.serving.latency_seed))
        except (TypeError, KeyError, ValueError, AttributeError):
            return _error(400, 'Expected a JSON body {"latency_ms": x, "jitter_ms": y, "sigma": s, "seed": n}.')
        try:
            serving = dataclasses.replace(self.latency.serving, latency_ms=latency_ms, jitter_ms=jitter_ms, latency_sigma=sigma, latency_seed=seed)
        except ValueError:
            return _error(400, "Latency, jitter and sigma must be finite and not negative.")
        self.latency.serving = serving
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
