"""One model's calls: response cache first, then the endpoint under its adaptive limit,
with the run's single retry layer (tenacity) honouring ``Retry-After`` within the model's
wait limits (``waits``)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from typing import Any

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt

from dd_core.config.models import ModelConfig
from dd_core.engine.llm.cache import RowGroupCache
from dd_core.engine.llm.client import CallFailed, ChatClient, Completion
from dd_core.engine.llm.limiter import AdaptiveLimiter
from dd_core.engine.llm.usage import ModelUsage
from dd_core.engine.llm.waits import RetryWaits


def serialise(body: dict[str, Any]) -> bytes:
    """The request body in canonical form: sent as is, and hashed as the cache key (the body
    holds everything that shapes the reply, and no secret or timeout)."""
    return json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, CallFailed) and exc.retryable


class ModelCaller:
    def __init__(self, model: ModelConfig, client: ChatClient, limiter: AdaptiveLimiter, usage: ModelUsage):
        self.model = model
        self.client = client
        self.limiter = limiter
        self.usage = usage

    async def complete(self, body: dict[str, Any], cache: RowGroupCache, priority: tuple) -> Completion:
        payload = serialise(body)
        key = hashlib.sha256(payload).hexdigest()
        cached = cache.get(key)
        if cached is not None:
            self.usage.cache_hits += 1
            return cached
        completion = await self._send(payload, priority)
        await cache.put(key, completion)
        self.usage.calls += 1
        self.usage.prompt_tokens += completion.prompt_tokens
        self.usage.completion_tokens += completion.completion_tokens
        return completion

    async def _send(self, payload: bytes, priority: tuple) -> Completion:
        """The first attempt runs bare (most calls succeed: no retry machinery on the hot path);
        after a transient failure, tenacity runs the remaining attempts."""
        try:
            return await self._attempt(payload, priority)
        except CallFailed as exc:
            if not exc.retryable or self.model.max_retries == 0:
                raise
            first_failure = exc
        waits = RetryWaits(self.model)
        delay = waits.next_wait(first_failure, 1)
        self.usage.retries += 1
        await asyncio.sleep(delay)
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.model.max_retries),
            wait=lambda state: waits.next_wait(state.outcome.exception(), state.attempt_number + 1),
            retry=retry_if_exception(_retryable),
            before_sleep=self._count_retry,
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                completion = await self._attempt(payload, priority)
        return completion

    async def _attempt(self, payload: bytes, priority: tuple) -> Completion:
        async with self.limiter.slot(priority):
            started = time.perf_counter()
            try:
                completion = await self.client.complete(payload)
            except CallFailed as exc:
                self._note(exc)
                raise
            finally:
                self.usage.request_seconds += time.perf_counter() - started
        self.limiter.on_success()
        return completion

    def _note(self, exc: CallFailed) -> None:
        self.usage.errors[exc.code] += 1
        self.usage.sample_error = self.usage.sample_error or str(exc)
        if exc.status == 429:
            self.usage.throttled += 1
            self.limiter.on_throttled()
            self.usage.lowest_concurrency = self.limiter.lowest_limit

    def _count_retry(self, state: RetryCallState) -> None:
        self.usage.retries += 1
