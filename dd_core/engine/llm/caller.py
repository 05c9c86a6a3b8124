"""One model's calls: response cache first, then the endpoint under its adaptive limit (and,
when the model has per-minute limits or the server sends ``x-ratelimit-*`` headers, its rate
limiter), with the run's single retry layer (tenacity) honouring ``Retry-After`` within the
model's wait limits (``waits``)."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Mapping

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt

from dd_core.config.models import ModelConfig
from dd_core.engine.llm.cache import RowGroupCache
from dd_core.engine.llm.client import CallFailed, ChatClient, Completion
from dd_core.engine.llm.limiter import AdaptiveLimiter
from dd_core.engine.llm.rate_limiter import RateLimiter, RequestTooLarge, request_tokens
from dd_core.engine.llm.usage import ModelUsage
from dd_core.engine.llm.waits import RetryWaits


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, CallFailed) and exc.retryable


class ModelCaller:
    """One model's call path, shared by every row group in progress; usage is counted into the
    ``ModelUsage`` of the row group that asked (each row group reports its own)."""

    def __init__(
        self, model: ModelConfig, client: ChatClient, limiter: AdaptiveLimiter, rate: RateLimiter | None = None
    ):
        self.model = model
        self.client = client
        self.limiter = limiter
        #: Requests/tokens per minute; made on the first rate-limit headers when not configured.
        self.rate = rate
        client.on_rate_headers = self._rate_headers

    def _rate_headers(self, headers: Mapping[str, str]) -> None:
        if self.rate is None:
            self.rate = RateLimiter(None, None)
        self.rate.observe(headers)

    async def complete(self, payload: bytes, cache: RowGroupCache, priority: tuple, usage: ModelUsage) -> Completion:
        """``payload``: the serialised body (see ``serialise``), also the cache key's source."""
        key = hashlib.sha256(payload).hexdigest()
        cached = cache.get(key)
        if cached is not None:
            usage.cache_hits += 1
            return cached
        # The first attempt runs bare (most calls succeed: no retry machinery on the hot path);
        # after a transient failure, tenacity runs the remaining attempts.
        try:
            completion = await self._attempt(payload, priority, usage)
            failure = None
        except CallFailed as exc:
            if not exc.retryable or self.model.max_retries == 0:
                raise
            failure = exc
        if failure is not None:
            completion = await self._retry(payload, priority, usage, failure)
        cache.put(key, completion, self.model.alias)
        usage.calls += 1
        usage.prompt_tokens += completion.prompt_tokens
        usage.completion_tokens += completion.completion_tokens
        return completion

    async def _retry(self, payload: bytes, priority: tuple, usage: ModelUsage, first_failure: CallFailed) -> Completion:
        waits = RetryWaits(self.model)
        delay = waits.next_wait(first_failure, 1)
        usage.retries += 1
        await asyncio.sleep(delay)

        def commit_wait(state: RetryCallState) -> None:
            # Called only when tenacity is about to sleep: after its stop check, which some of its
            # versions make after asking for the next wait (a wait planned after the last attempt
            # is never slept, so it is neither logged nor counted).
            waits.commit(state.outcome.exception(), state.attempt_number + 1, state.next_action.sleep)
            usage.retries += 1

        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.model.max_retries),
            wait=lambda state: waits.plan(state.outcome.exception(), state.attempt_number + 1),
            retry=retry_if_exception(_retryable),
            before_sleep=commit_wait,
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                completion = await self._attempt(payload, priority, usage)
        return completion

    async def _attempt(self, payload: bytes, priority: tuple, usage: ModelUsage) -> Completion:
        limiter = self.limiter
        if not limiter.try_acquire():
            await limiter.acquire(priority)
        rate, ticket = self.rate, None
        if rate is not None:
            try:
                ticket = await rate.acquire(request_tokens(payload, self.model.max_tokens), priority)
            except RequestTooLarge as exc:
                limiter.release()
                raise CallFailed(str(exc), code="too_large", retryable=False) from exc
            except BaseException:
                limiter.release()
                raise
        started = time.monotonic()
        try:
            completion = await self.client.complete(payload)
        except CallFailed as exc:
            usage.request_seconds += time.monotonic() - started
            limiter.release()
            if ticket is not None:
                rate.release(ticket)
            self._note(exc, usage)
            raise
        except BaseException:
            limiter.release()
            if ticket is not None:
                rate.release(ticket)
            raise
        elapsed = time.monotonic() - started
        usage.request_seconds += elapsed
        limiter.release(elapsed)
        if ticket is not None:
            rate.release(ticket, completion.prompt_tokens + completion.completion_tokens)
        return completion

    def _note(self, exc: CallFailed, usage: ModelUsage) -> None:
        usage.errors[exc.code] += 1
        usage.sample_error = usage.sample_error or str(exc)
        if exc.throttled:
            usage.throttled += 1
            self.limiter.on_throttled()
            usage.lowest_concurrency = min(self.limiter.limit, usage.lowest_concurrency or self.limiter.limit)
