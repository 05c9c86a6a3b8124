"""One test server: its state (fault rules, latency, stats, rate limits, batches), the aiohttp
application that serves its protocols over that state, and starting it on a socket.

A chat request goes the same way whatever its protocol: key check, parse, reply, rate limit,
fault pick, latency, then the answer or the fault's answer (see :meth:`ChatService._answer`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

from aiohttp import web

from dd_core.testing.llm_server.control import add_routes as add_control_routes
from dd_core.testing.llm_server.faults import FaultRule, Faults, faulty_answer
from dd_core.testing.llm_server.latency import Latency, Serving
from dd_core.testing.llm_server.openai_batches import BatchService
from dd_core.testing.llm_server.openai_chat import OpenAIChat, error_middleware, error_response, models_json
from dd_core.testing.llm_server.protocol import ChatProtocol, RequestProblem, json_or_none
from dd_core.testing.llm_server.rate_limits import ServerRateLimits
from dd_core.testing.llm_server.rate_limits import add_routes as add_rate_limit_routes
from dd_core.testing.llm_server.stats import Exchange, Stats, vllm_metrics

HOST = "127.0.0.1"
DEFAULT_MODELS = ("test-model",)


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
        self.openai = OpenAIChat()
        self.faults = Faults()
        self.stats = Stats()
        self.latency = Latency(serving or Serving(), self.stats)
        self.rate_limits = ServerRateLimits()
        self.batches = BatchService(self._batch_reply, self._openai_authorized, error_response)

    def build_app(self) -> web.Application:
        app = web.Application(middlewares=[error_middleware], client_max_size=64 * 2**20)
        app.add_routes(
            [
                web.post("/v1/chat/completions", self._chat_route(self.openai)),
                web.get("/v1/models", self._list_models),
            ]
        )
        add_control_routes(app, faults=self.faults, stats=self.stats, latency=self.latency, error=error_response)
        add_rate_limit_routes(app, self.rate_limits, error_response)
        self.batches.add_routes(app)
        if self.latency.serving.metrics:
            app.add_routes([web.get("/metrics", self._metrics)])
        return app

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.Response(text=vllm_metrics(self.models, *self.latency.queue()), content_type="text/plain")

    def _openai_authorized(self, request: web.Request) -> bool:
        return self.openai.authorized(request, self.api_key)

    async def _list_models(self, request: web.Request) -> web.Response:
        if not self._openai_authorized(request):
            return error_response(401, "Incorrect API key provided.")
        return web.json_response(models_json(self.models))

    def _chat_route(self, protocol: ChatProtocol) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def handle(request: web.Request) -> web.StreamResponse:
            exchange = self.stats.begin(request)
            try:
                response = await self._answer(request, exchange, protocol)
                if exchange.fault != "disconnect":
                    exchange.status = response.status
                return response
            finally:
                self.stats.finish(exchange)

        return handle

    async def _answer(self, request: web.Request, exchange: Exchange, protocol: ChatProtocol) -> web.StreamResponse:
        if not protocol.authorized(request, self.api_key):
            return protocol.error(401, "Incorrect API key provided.")
        try:
            chat = protocol.read(await json_or_none(request))
        except RequestProblem as exc:
            return protocol.error(400, str(exc))
        exchange.key, exchange.model, exchange.prompt = chat.key, chat.model, chat.texts[-1][:200]
        try:
            content = protocol.reply(chat)
        except RequestProblem as exc:
            return protocol.error(400, str(exc))
        admitted, limit_headers = self.rate_limits.admit(exchange.t_start, protocol.tokens(chat, content))
        if not admitted:
            return protocol.error(429, "Rate limit reached for requests or tokens per minute.", limit_headers)
        rule = self._pick_fault(chat.model, chat.texts)
        hold = self.faults.hold_of(rule)
        await self.latency.wait(exchange, None if hold is None else (rule.name, hold))
        if rule is not None:
            exchange.fault = rule.kind
        if rule is None or rule.kind == "hold":
            exchange.succeeded = True
            return protocol.completion(chat, content, limit_headers)
        response = await faulty_answer(rule, request, chat, content, protocol)
        exchange.succeeded = rule.kind == "hang"  # a hang that ends answers normally
        return response

    def _batch_reply(self, body: Any) -> tuple[int, dict[str, Any]]:
        return self.openai.batch_reply(body, self._pick_fault)

    def _pick_fault(self, model: str, texts: Sequence[str]) -> FaultRule | None:
        rule = self.faults.pick(model, texts)
        if rule is not None:
            self.stats.faults_injected[rule.kind] += 1
        return rule


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
