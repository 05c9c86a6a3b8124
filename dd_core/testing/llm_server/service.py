"""One test server: its state (fault rules, latency, stats, rate limits, batches), the aiohttp
application that serves its protocols over that state, and starting it on a socket.

It speaks every protocol at once, on one port: OpenAI's (``/v1/chat/completions``, ``/v1/files``,
``/v1/batches``), Azure OpenAI's (``/openai/deployments/{deployment}/chat/completions``,
``/openai/files``, ``/openai/batches``; its listed models are its deployments) and Anthropic's
(``/v1/messages``, ``/v1/messages/batches``). A chat request goes the same way whatever its
protocol: URL check, key check, parse, reply, rate limit, fault pick, latency, then the answer or
the fault's answer (see :meth:`ChatService._answer`).
"""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable, Iterable, Sequence

from aiohttp import web

from dd_core.testing.llm_server.anthropic_batches import MessageBatchesAPI
from dd_core.testing.llm_server.anthropic_chat import MESSAGES_WAYS, AnthropicMessages, version_refusal
from dd_core.testing.llm_server.azure_chat import (
    CHAT_PATH,
    AzureChat,
    api_version_refusal,
    azure_authorized,
    azure_error,
)
from dd_core.testing.llm_server.batch_lifecycle import BatchStore
from dd_core.testing.llm_server.control import add_routes as add_control_routes
from dd_core.testing.llm_server.faults import FaultRule, Faults, faulty_answer
from dd_core.testing.llm_server.latency import Latency, Serving
from dd_core.testing.llm_server.openai_batch_files import ENDPOINT, error_body
from dd_core.testing.llm_server.openai_batches import FilesBatchesAPI, FilesDialect
from dd_core.testing.llm_server.openai_chat import (
    STRUCTURED_WAYS,
    OpenAIChat,
    error_middleware,
    error_response,
    models_json,
)
from dd_core.testing.llm_server.protocol import ChatProtocol, RequestProblem, json_or_none
from dd_core.testing.llm_server.rate_limits import ServerRateLimits
from dd_core.testing.llm_server.rate_limits import add_routes as add_rate_limit_routes
from dd_core.testing.llm_server.stats import Exchange, Stats, vllm_metrics
from dd_core.testing.llm_server.streaming import reply

HOST = "127.0.0.1"
DEFAULT_MODELS = ("test-model",)
#: Every way of asking for structured output a server can be told to refuse (``tools`` in every protocol).
REFUSABLE = tuple(dict.fromkeys(STRUCTURED_WAYS + MESSAGES_WAYS))


class ChatService:
    """Request handlers and the mutable state (latency, fault rules, stats) of one server."""

    def __init__(
        self,
        *,
        serving: Serving | None = None,
        models: Iterable[str] = DEFAULT_MODELS,
        api_key: str | None = None,
        refuse: Iterable[str] = (),
    ):
        self.models = tuple(models)
        self.api_key = api_key
        refuse = frozenset(refuse)
        unknown = refuse - set(REFUSABLE)
        if unknown:
            raise ValueError(f"cannot refuse {sorted(unknown)}; choose from {list(REFUSABLE)}")
        chat_ways = refuse & set(STRUCTURED_WAYS)
        self.openai = OpenAIChat(chat_ways)
        self.azure = AzureChat(self.models, chat_ways)
        self.anthropic = AnthropicMessages(refuse & set(MESSAGES_WAYS))
        self.faults = Faults()
        self.stats = Stats()
        self.latency = Latency(serving or Serving(), self.stats)
        self.rate_limits = ServerRateLimits()
        self.batches = BatchStore()

    def build_app(self) -> web.Application:
        # Anthropic's batches take up to 256 MB in one request.
        app = web.Application(middlewares=[error_middleware], client_max_size=260 * 2**20)
        app.add_routes(
            [
                web.post("/v1/chat/completions", self._chat_route(self.openai)),
                web.post(CHAT_PATH, self._chat_route(self.azure)),
                web.post("/v1/messages", self._chat_route(self.anthropic)),
                web.get("/v1/models", self._list_models),
                web.get("/openai/models", self._azure_models),
                web.get("/v1/models/{model}", self._anthropic_model),
            ]
        )
        add_control_routes(app, faults=self.faults, stats=self.stats, latency=self.latency, error=error_response)
        add_rate_limit_routes(app, self.rate_limits, error_response)
        self.batches.add_control_routes(app, error_response)
        for dialect in self._file_dialects():
            FilesBatchesAPI(self.batches, dialect).add_routes(app)
        MessageBatchesAPI(
            self.batches,
            self.anthropic,
            lambda body: self.anthropic.batch_reply(body, self._pick_fault),
            lambda: self.api_key,
        ).add_routes(app)
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

    async def _azure_models(self, request: web.Request) -> web.Response:
        """Azure's model list (models, not deployments): what dd's endpoint check asks for."""
        if not azure_authorized(request, self.api_key):
            return azure_error(401, "Access denied due to invalid subscription key or wrong API endpoint.")
        return api_version_refusal(request) or web.json_response(models_json(self.models))

    async def _anthropic_model(self, request: web.Request) -> web.Response:
        """Anthropic's ``GET /v1/models/{model}``; like the Messages route here, any model is served."""
        if not self.anthropic.authorized(request, self.api_key):
            return self.anthropic.error(401, "invalid x-api-key")
        model = request.match_info["model"]
        return version_refusal(request) or web.json_response(
            {"type": "model", "id": model, "display_name": model, "created_at": "2025-01-01T00:00:00Z"}
        )

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
        refusal = protocol.refusal(request)
        if refusal is not None:
            return refusal
        try:
            chat = protocol.read(request, await json_or_none(request))
        except RequestProblem as exc:
            return protocol.error(400, str(exc))
        exchange.key, exchange.model, exchange.prompt = chat.key, chat.model, chat.texts[-1][:200]
        exchange.stream = chat.stream
        try:
            content = protocol.reply(chat)
        except RequestProblem as exc:
            return protocol.error(400, str(exc))
        admission = self.rate_limits.admit(exchange.t_start, protocol.tokens(chat, content))
        limit_headers = protocol.rate_headers(admission.budgets)
        if not admission.admitted:
            return protocol.rate_limited(limit_headers, admission.retry_after_s)
        rule = self._pick_fault(chat.model, chat.texts)
        hold = self.faults.hold_of(rule)
        await self.latency.wait(exchange, None if hold is None else (rule.name, hold))
        if rule is not None:
            exchange.fault = rule.kind
        if rule is None or rule.kind == "hold":
            exchange.succeeded = True
            return await reply(request, protocol, chat, content, limit_headers)
        response = await faulty_answer(rule, request, chat, content, protocol)
        exchange.succeeded = rule.kind in ("hang", "slow")  # a hang that ends, or a slow reply, answers normally
        return response

    def _file_dialects(self) -> list[FilesDialect]:
        return [
            FilesDialect(
                protocol="openai", prefix="/v1", endpoint=ENDPOINT, max_requests=50_000,
                answer=lambda body: self.openai.batch_reply(body, self._pick_fault), error=error_response,
                error_body=error_body, authorized=self._openai_authorized, refusal=lambda request: None,
            ),
            FilesDialect(
                protocol="azure", prefix="/openai", endpoint="/chat/completions", max_requests=100_000,
                answer=lambda body: self.azure.batch_reply(body, self._pick_fault), error=azure_error,
                error_body=lambda status, message: {"error": {"code": str(status), "message": message}},
                authorized=lambda request: azure_authorized(request, self.api_key), refusal=api_version_refusal,
                deployments=frozenset(self.models),
            ),
        ]  # fmt: skip

    def _pick_fault(self, model: str, texts: Sequence[str]) -> FaultRule | None:
        rule = self.faults.pick(model, texts)
        if rule is not None:
            self.stats.faults_injected[rule.kind] += 1
        return rule


async def start_serving(
    service: ChatService, host: str, port: int, ssl_context: ssl.SSLContext | None = None
) -> tuple[web.AppRunner, int]:
    """Listen on host:port (0 = a free port), over TLS with ``ssl_context``; return the runner and
    the bound port."""
    # handler_cancellation: a handler (e.g. a "hang") is cancelled when its client goes away.
    runner = web.AppRunner(service.build_app(), access_log=None, handler_cancellation=True, shutdown_timeout=1.0)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port, ssl_context=ssl_context).start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner, runner.addresses[0][1]
