"""One model's calls: response cache first, then the endpoint under its adaptive limit,
with the run's single retry layer (tenacity) honouring ``Retry-After``."""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import time
from typing import Any

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt

from dd_core.config.models import ModelConfig
from dd_core.engine.llm.cache import RowGroupCache
from dd_core.engine.llm.client import CallFailed, ChatClient, Completion
from dd_core.engine.llm.limiter import AdaptiveLimiter
from dd_core.engine.llm.usage import ModelUsage

MAX_RETRY_AFTER_S = 60.0
BACKOFF_BASE_S = 0.25
BACKOFF_MAX_S = 20.0


def serialise(body: dict[str, Any]) -> bytes:
    """The request body in canonical form: sent as is, and hashed as the cache key (the body
    holds everything that shapes the reply, and no secret or timeout)."""
    return json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()


def retry_delay(exc: BaseException | None, attempt: int) -> float:
    """Seconds before retry number ``attempt``: the server's Retry-After when it sent one,
    else exponential backoff (0.25 s, 0.5 s, 1 s, ... up to 20 s) with full jitter."""
    if isinstance(exc, CallFailed) and exc.retry_after is not None:
        return min(exc.retry_after, MAX_RETRY_AFTER_S)
    return random.uniform(0, min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2 ** (attempt - 1)))


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
        self.usage.retries += 1
        await asyncio.sleep(retry_delay(first_failure, 1))
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.model.max_retries),
            wait=lambda state: retry_delay(state.outcome.exception(), state.attempt_number + 1),
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
