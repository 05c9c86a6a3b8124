"""The models of one run: a connection pool, and per model alias a caller with its limiter
and the task that adapts that limiter to the server (or, for a batch-mode model, a caller that
sends its requests as batches)."""

from __future__ import annotations

import asyncio

import aiohttp

from dd_core.config import DatasetConfig
from dd_core.config.llm_columns import LLMColumn
from dd_core.engine.llm.adaptive import follow_server
from dd_core.engine.llm.batch_caller import BatchCaller
from dd_core.engine.llm.caller import ModelCaller
from dd_core.engine.llm.client import ChatClient
from dd_core.engine.llm.limiter import AdaptiveLimiter
from dd_core.engine.llm.providers import provider_for
from dd_core.engine.llm.rate_limiter import RateLimiter
from dd_core.engine.llm.runtime import LLMRuntime


class ModelSessions:
    def __init__(self, config: DatasetConfig, runtime: LLMRuntime):
        self.config = config
        self.runtime = runtime
        aliases = sorted({c.model for c in config.columns if isinstance(c, LLMColumn)})
        # Endpoints first: a missing base_url or key is a config error before anything starts.
        self.endpoints = {alias: runtime.endpoint(config.model(alias)) for alias in aliases}
        self.callers: dict[str, ModelCaller | BatchCaller] = {}
        self._followers: list[asyncio.Task] = []

    @property
    def slots(self) -> int:
        """Requests that may be in flight at once, over all models sent online."""
        return max(1, sum(c.limiter.max_limit for c in self.online.values()))

    @property
    def online(self) -> dict[str, ModelCaller]:
        return {a: c for a, c in self.callers.items() if isinstance(c, ModelCaller)}

    @property
    def batched(self) -> bool:
        """Some model sends its requests as batches (its row groups' rows then all start at once)."""
        return len(self.online) < len(self.callers)

    async def __aenter__(self) -> ModelSessions:
        # No cookie jar: an API client has no cookies, and the jar costs time on every request.
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0), cookie_jar=aiohttp.DummyCookieJar()
        )
        for alias, endpoint in self.endpoints.items():
            model = endpoint.model
            provider = provider_for(model)
            if model.batch:
                self.callers[alias] = BatchCaller(model, provider.batch_api(self.session, endpoint))
                continue
            limiter = AdaptiveLimiter(endpoint.max_parallel_requests)
            carried = alias in self.runtime.limits
            if carried:
                limiter.set_limit(self.runtime.limits[alias])
            client = ChatClient(self.session, provider.chat_dialect(endpoint), endpoint.timeouts, stream=model.streams)
            rate = None
            if endpoint.max_requests_per_minute or endpoint.max_tokens_per_minute:
                rate = RateLimiter(endpoint.max_requests_per_minute, endpoint.max_tokens_per_minute)
            self.callers[alias] = ModelCaller(model, client, limiter, rate)
            if model.adaptive_concurrency:
                self._followers.append(
                    asyncio.create_task(follow_server(limiter, self.session, endpoint.base_url, carried=carried))
                )
        return self

    async def __aexit__(self, *exc_info) -> None:
        for alias, caller in self.online.items():
            self.runtime.limits[alias] = caller.limiter.limit
        for task in self._followers:
            task.cancel()
        try:
            await asyncio.gather(*self._followers, return_exceptions=True)
        finally:  # also when the run is cancelled while it winds down
            await self.session.close()
