"""Per-model concurrency: a priority-ordered, adaptive (AIMD) limit on requests in flight.

A 429 halves the model's limit (at most once per ``cooldown_s``, so one burst of 429s is one
decrease); every ``limit`` successes in a row raise it by one, back up to the configured
maximum. Waiters are served by priority: cells of later columns first, then lower rows,
so started rows finish before new ones begin.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from contextlib import asynccontextmanager
from collections.abc import AsyncIterator


class AdaptiveLimiter:
    def __init__(self, max_limit: int, *, cooldown_s: float = 1.0):
        self.max_limit = max_limit
        self.limit = max_limit
        self.lowest_limit = max_limit
        self.decreases = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self._cooldown_s = cooldown_s
        self._last_decrease = -float("inf")
        self._streak = 0
        self._waiters: list[tuple[tuple, int, asyncio.Future]] = []
        self._order = itertools.count()

    @asynccontextmanager
    async def slot(self, priority: tuple = ()) -> AsyncIterator[None]:
        await self._acquire(priority)
        try:
            yield
        finally:
            self.in_flight -= 1
            self._wake()

    async def _acquire(self, priority: tuple) -> None:
        if self.in_flight < self.limit and not self._waiters:
            self._enter()
            return
        future = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (priority, next(self._order), future))
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.in_flight -= 1  # granted just before the cancel: give it back
                self._wake()
            raise

    def _enter(self) -> None:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def _wake(self) -> None:
        while self._waiters and self.in_flight < self.limit:
            _, _, future = heapq.heappop(self._waiters)
            if not future.done():
                self._enter()
                future.set_result(None)

    def on_success(self) -> None:
        self._streak += 1
        if self.limit < self.max_limit and self._streak >= self.limit:
            self.limit += 1
            self._streak = 0
            self._wake()

    def on_throttled(self) -> None:
        self._streak = 0
        now = time.monotonic()
        if now - self._last_decrease >= self._cooldown_s and self.limit > 1:
            self.limit = max(1, self.limit // 2)
            self.lowest_limit = min(self.lowest_limit, self.limit)
            self.decreases += 1
            self._last_decrease = now
