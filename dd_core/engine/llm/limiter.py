"""Per-model concurrency: a priority-ordered limit on requests in flight, which adapts.

Mechanism only: ``acquire``/``release`` count requests in flight and serve waiters by priority
(the oldest row group first, then later columns, then lower rows, so started rows finish before
new ones begin and checkpoints keep flowing). The limit in force is the lower of two, each
between 1 and ``max_limit``:

- ``target``, set by a controller (``dd_core.engine.llm.adaptive``) from the server's queue
  depth or from how its latency follows the number in flight;
- ``ceiling``, from back-pressure (429, and 503/529 from a server's admission queue or
  overload: see ``retry_policy.THROTTLING_STATUS``): halved at most once per ``cooldown_s`` (one burst is
  one decrease), and raised by one after every ``limit`` successes in a row, back up to the maximum.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Callable


class AdaptiveLimiter:
    def __init__(self, max_limit: int, *, cooldown_s: float = 1.0):
        self.max_limit = max_limit
        self.target = self.ceiling = self.limit = max_limit
        self.in_flight = 0
        #: True once the limit held requests back since the controller last looked.
        self.saturated = False
        #: Called with each successful call's seconds in flight and the number in flight as it
        #: ended (a latency controller).
        self.on_latency: Callable[[float, int], None] | None = None
        self._cooldown_s = cooldown_s
        self._last_decrease = -float("inf")
        self._streak = 0
        self._waiters: list[tuple[tuple, int, asyncio.Future]] = []
        self._order = itertools.count()

    def try_acquire(self) -> bool:
        """Take a slot now if one is free and nobody waits (no coroutine: the usual case)."""
        if self.in_flight < self.limit and not self._waiters:
            self._enter()
            return True
        return False

    async def acquire(self, priority: tuple = ()) -> None:
        if self.try_acquire():
            return
        self.saturated = True
        future = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (priority, next(self._order), future))
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.release()  # granted just before the cancel: give it back
            raise

    def release(self, seconds: float | None = None) -> None:
        """A request left; ``seconds`` is its time in flight when it succeeded."""
        self.in_flight -= 1
        if seconds is not None:
            self._streak += 1
            if self._streak >= self.limit and self.ceiling < self.max_limit:
                self._streak = 0
                self.ceiling += 1
                self._update()
            if self.on_latency is not None:
                self.on_latency(seconds, self.in_flight + 1)
        if self._waiters:
            self._wake()

    def set_limit(self, limit: int) -> None:
        """The controllers' way in (the target): clamped to [1, max_limit]; waiters start if it grew."""
        self.target = max(1, min(self.max_limit, int(limit)))
        self._update()

    def on_throttled(self) -> None:
        self._streak = 0
        now = time.monotonic()
        if now - self._last_decrease >= self._cooldown_s and self.limit > 1:
            self.ceiling = self.limit // 2
            self._last_decrease = now
            self._update()

    def _update(self) -> None:
        self.limit = min(self.target, self.ceiling)
        self._wake()

    def _enter(self) -> None:
        self.in_flight += 1

    def _wake(self) -> None:
        waiters = self._waiters
        while waiters and self.in_flight < self.limit:
            future = heapq.heappop(waiters)[2]
            if not future.done():
                self._enter()
                future.set_result(None)
