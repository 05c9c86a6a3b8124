"""Following a server without queue metrics by latency, without ever paying for noise.

Hosted providers (OpenAI, Azure, Anthropic) publish no queue, and their latency varies widely
without one: with a lognormal spread (sigma 1) single calls take a tenth or ten times the median.
Latency alone says nothing about congestion; latency that *rises with the number of requests in
flight* does: past a server's knee every extra request only waits, so latency grows in proportion
and throughput does not. So the limit stays where it is (``max_parallel_requests``) unless a
probe over a real window shows exactly that:

- Calls are counted in windows of at least ``WINDOW`` calls (and twice the limit): each gives
  its median latency and the mean number of requests in flight when its calls ended.
- A *probe* runs one window at three quarters of the limit (after ``limit`` calls to settle) and
  compares it with the window before: the elasticity ``log(latency ratio) / log(in-flight
  ratio)`` is about 0 without a queue (throughput follows the in-flight count) and about 1 past
  the knee (throughput flat). Above ``ELASTIC`` (1/2: more than half of the extra requests only
  waited) the lower limit is kept and the next window probes lower still; otherwise the limit
  goes back. A window that held no requests back, or in-flight counts too close to tell, decides
  nothing.
- Down-probes run once early in the run, and again only when a window's median latency has
  risen by half over the one the last decision was made on (the server got busier). Below the
  maximum, up-probes (a third more) run every few windows and are kept when latency does not
  follow; each one that finds nothing doubles the wait before the next (up to 32 windows).

The early probe costs a quarter of the throughput for about three windows' worth of calls once
per run (well under 1% of a long run); a server whose latency never rises costs nothing after it.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

from dd_core.engine.llm.limiter import AdaptiveLimiter

WINDOW = 1024  # calls: the median of 1,024 lognormal (sigma 1) latencies is within ~4% of the true one
PROBE_DOWN = 0.75
PROBE_UP = 4 / 3
ELASTIC = 0.5
RISE = 1.5  # a window this much slower than the last decision's: look again
MIN_IN_FLIGHT_RATIO = 1.15  # closer than this, two windows say nothing about the knee
MAX_BACKOFF = 32  # windows between two up-probes that found nothing, at most


@dataclass(frozen=True)
class Window:
    median_s: float
    in_flight: float  # mean requests in flight when its calls ended


def elasticity(high: Window, low: Window) -> float | None:
    """How much of the in-flight difference between two windows turned into latency (0: none,
    1: all of it), or None when the windows are too close (or odd) to tell."""
    if low.in_flight <= 0 or high.in_flight / low.in_flight < MIN_IN_FLIGHT_RATIO:
        return None
    if high.median_s <= 0 or low.median_s <= 0:
        return None
    return math.log(high.median_s / low.median_s) / math.log(high.in_flight / low.in_flight)


class LatencyController:
    def __init__(self, limiter: AdaptiveLimiter, *, early_probe: bool = True):
        self.limiter = limiter
        #: The window the last decision was made on (the reference for a rise in latency).
        self.settled: Window | None = None
        self.probes = 0
        self._early_probe = early_probe
        self._last: Window | None = None  # the latest window at the limit in force
        self._probe: tuple[str, int, int] | None = None  # (direction, the limit to go back to, the probe's)
        self._skip = limiter.limit  # calls left to settle (after the start, or a move of the limit)
        self._latencies: list[float] = []
        self._in_flight = 0
        self._windows_since_up = 0
        self._backoff = 1
        limiter.saturated = False
        limiter.on_latency = self.observe

    def observe(self, seconds: float, in_flight: int) -> None:
        """One successful call: its seconds in flight, and how many were in flight as it ended."""
        if self._skip > 0:
            self._skip -= 1
            return
        self._latencies.append(seconds)
        self._in_flight += in_flight
        if len(self._latencies) >= max(WINDOW, 2 * self.limiter.limit):
            window = Window(statistics.median(self._latencies), self._in_flight / len(self._latencies))
            self._latencies.clear()
            self._in_flight = 0
            saturated, self.limiter.saturated = self.limiter.saturated, False
            self._decide(window, saturated)

    def _decide(self, window: Window, saturated: bool) -> None:
        limiter = self.limiter
        if self._probe is not None:
            self._conclude(window, saturated)
            return
        self._last = window
        if self.settled is None:
            self.settled = window
        if not saturated:
            return  # demand below the limit: nothing to learn about the server
        if self._early_probe or window.median_s > RISE * self.settled.median_s:
            self._early_probe = False
            self._start("down")
            return
        self._windows_since_up += 1
        if limiter.target < limiter.max_limit and self._windows_since_up >= self._backoff:
            self._start("up")

    def _start(self, direction: str) -> None:
        limiter = self.limiter
        before = limiter.target
        target = math.floor(before * PROBE_DOWN) if direction == "down" else math.ceil(before * PROBE_UP)
        target = max(1, min(limiter.max_limit, target))
        if target == before:
            return
        self.probes += 1
        self._probe = (direction, before, target)
        limiter.set_limit(target)
        self._skip = max(before, target)  # the requests sent under the old limit end first

    def _conclude(self, window: Window, saturated: bool) -> None:
        limiter = self.limiter
        direction, before, target = self._probe
        self._probe = None
        reference = self._last
        if limiter.target != target:
            return  # another controller moved the target meanwhile: that decision stands
        if direction == "down":
            e = elasticity(reference, window) if saturated else None
            if e is not None and e > ELASTIC:
                self._last = self.settled = window  # queueing: keep the lower limit, look lower still
                self._start("down")
                return
        else:
            e = elasticity(window, reference) if saturated else None
            if e is not None and e < ELASTIC:
                self._last = self.settled = window  # the server had room: keep it, look higher still
                self._backoff = 1
                self._windows_since_up = 0
                self._start("up")
                return
            self._backoff = min(MAX_BACKOFF, self._backoff * 2)
        self._windows_since_up = 0
        self.settled = reference
        limiter.set_limit(before)
        self._skip = before
