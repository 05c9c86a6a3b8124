"""One model's calls: response cache first, then the endpoint under its adaptive limit (and,
when the model has per-minute limits or the server sends ``x-ratelimit-*`` headers, its rate
limiter), with the run's single retry layer (tenacity) honouring ``Retry-After`` within the
model's wait limits (``waits``).

A request that timed out is not sent again blindly (the same request takes the same time, and
the server may still be writing the first): it is asked again once, with twice the time to
begin, and a second timeout fails the cell naming ``timeout_s`` and the time the reply took.
Every request given up on after it reached the server (a timeout, a stalled stream, a cut
connection) is counted as abandoned, and recorded in the response cache's log as possibly
billed (``RowGroupCache.put_abandoned``)."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Mapping

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt

from dd_core.config.models import ModelConfig
from dd_core.engine.llm.cache import RowGroupCache
from dd_core.engine.llm.client import CallFailed, ChatClient, Completion, prompt_estimate
from dd_core.engine.llm.limiter import AdaptiveLimiter
from dd_core.engine.llm.rate_limiter import RateLimiter, RequestTooLarge, request_tokens
from dd_core.engine.llm.timeouts import Timeouts
from dd_core.engine.llm.usage import ModelUsage
from dd_core.engine.llm.waits import RetryWaits
from dd_core.log import get_logger

log = get_logger(__name__)


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, CallFailed) and exc.retryable


class _Attempts:
    """One cell's attempts after a failure: how long the next may take."""

    def __init__(self, model: ModelConfig, timeouts: Timeouts, streamed: bool):
        self.model = model
        self.timeouts = timeouts
        #: Whether replies already stream (or cannot: Azure's are read whole), so the hint needs no stream: true.
        self.streamed = streamed
        self.timed_out = False

    def judged(self, failure: CallFailed) -> CallFailed:
        """The failure as the retry layer should see it: a first timeout is asked again with
        twice the time to begin; a second one is final."""
        if failure.code != "timeout" or not failure.retryable:
            return failure
        if not self.timed_out:
            self.timed_out = True
            self.timeouts = self.timeouts.longer(2)
            log.info(
                "model %s (%s): %s; asking once more, with %g s for the reply to begin",
                self.model.alias, self.model.model, failure, self.timeouts.first_byte_s,
            )  # fmt: skip
            return failure
        seconds = failure.abandoned.seconds if failure.abandoned is not None else self.timeouts.first_byte_s
        hint = "" if self.streamed else " or set stream: true"
        return CallFailed(
            f"{failure}, asked a second time with twice the time ({seconds:,.0f} s): the reply takes longer, and the "
            f"server may still be writing both (a provider bills them); raise timeout_s for model "
            f"'{self.model.alias}'{hint}",
            code="timeout",
            retryable=False,
        )


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
            completion = await self._attempt(payload, priority, usage, cache, None)
            failure = None
        except CallFailed as exc:
            if not exc.retryable or self.model.max_retries == 0:
                raise
            failure = exc
        if failure is not None:
            completion = await self._retry(payload, priority, usage, cache, failure)
        cache.put(key, completion, self.model.alias)
        usage.calls += 1
        usage.prompt_tokens += completion.prompt_tokens
        usage.completion_tokens += completion.completion_tokens
        return completion

    async def _retry(
        self, payload: bytes, priority: tuple, usage: ModelUsage, cache: RowGroupCache, first_failure: CallFailed
    ) -> Completion:
        attempts = _Attempts(self.model, self.client.timeouts, self.client.stream or not self.client.can_stream)
        first_failure = attempts.judged(first_failure)
        if not first_failure.retryable:
            raise first_failure
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
                completion = await self._attempt(payload, priority, usage, cache, attempts)
        return completion

    async def _attempt(
        self, payload: bytes, priority: tuple, usage: ModelUsage, cache: RowGroupCache, attempts: _Attempts | None
    ) -> Completion:
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
            completion = await self.client.complete(payload, None if attempts is None else attempts.timeouts)
        except CallFailed as exc:
            usage.request_seconds += time.monotonic() - started
            limiter.release()
            if ticket is not None:
                rate.release(ticket)
            self._note(exc, usage, cache, payload)
            judged = exc if attempts is None else attempts.judged(exc)
            if judged is exc:
                raise
            raise judged from exc
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

    def _note(self, exc: CallFailed, usage: ModelUsage, cache: RowGroupCache, payload: bytes) -> None:
        usage.errors[exc.code] += 1
        usage.sample_error = usage.sample_error or str(exc)
        if exc.throttled:
            usage.throttled += 1
            self.limiter.on_throttled()
            usage.lowest_concurrency = min(self.limiter.limit, usage.lowest_concurrency or self.limiter.limit)
        if exc.abandoned is not None:
            seen = exc.abandoned.tokens_seen
            prompt, completion = prompt_estimate(payload), seen if seen is not None else self.model.max_tokens or 0
            usage.abandoned += 1
            usage.abandoned_prompt_tokens += prompt
            usage.abandoned_completion_tokens += completion
            cache.put_abandoned(self.model.alias, prompt, completion)
