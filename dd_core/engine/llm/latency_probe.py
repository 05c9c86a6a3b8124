"""Following a server without queue metrics by latency, without ever paying for noise.

Hosted providers (OpenAI, Azure, Anthropic) publish no queue, and their latency varies widely
without one: with a lognormal spread (sigma 1) single calls take a tenth or ten times the median.
Latency alone says nothing about congestion; latency that *rises with the number of requests in
flight* does: past a server's knee every extra request only waits, so latency grows in proportion
and throughput does not. So the limit stays where it is (``max_parallel_requests``) unless a
probe over a real window shows exactly that:

- Calls are counted in windows of at least ``WINDOW`` calls (and twice the limit): each gives
  its median latency and the mean number of requests in flight when its calls ended.
- A *probe* runs one window at three quarters of the limit (after ``limit`` calls to settle),
  then one back at the limit it left, and compares the first with the two around it (so a drift
  of the server's speed meanwhile cancels out): the elasticity ``log(latency ratio) /
  log(in-flight ratio)`` is about 0 without a queue (throughput follows the in-flight count) and
  about 1 past the knee (throughput flat). Above ``ELASTIC`` (1/2: more than half of the extra
  requests only waited) the lower limit is kept and the next window probes lower still. A window
  whose calls did not fill the limit (``BUSY``), or in-flight counts too close to tell, decides
  nothing.
- Down-probes run once early in the run, and again only when a window's median latency has
  risen by half over the one the last decision was made on (the server got busier). Below the
  maximum, up-probes (a third more) run every few windows and are kept when latency does not
  follow; each one that finds nothing doubles the wait before the next (up to 32 windows).

The early probe costs a quarter of the throughput for about two windows' worth of calls once per
run (simulated: 99.0% and 99.6% of a fixed limit's throughput over 150 calls per slot at 256 and
1,024 in flight); a server whose latency never rises costs nothing after it.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

from dd_core.engine.llm.limiter import AdaptiveLimiter
from dd_core.log import get_logger

log = get_logger(__name__)

WINDOW = 1024  # calls: the median of 1,024 lognormal (sigma 1) latencies is within ~4% of the true one
PROBE_DOWN = 0.75
PROBE_UP = 4 / 3
ELASTIC = 0.5
RISE = 1.5  # a window this much slower than the last decision's: look again
MIN_IN_FLIGHT_RATIO = 1.15  # closer than this, two windows say nothing about the knee
MAX_BACKOFF = 32  # windows between two up-probes that found nothing, at most
BUSY = 0.9  # a window whose mean in flight is below this share of the limit says nothing of the server


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
        self._next: str | None = "down" if early_probe else None  # a probe due at the next busy window
        self._last: Window | None = None  # the latest window at the limit in force
        #: The probe under way: its direction, the limit it left and the one it tries.
        self._probe: tuple[str, int, int] | None = None
        self._tried: Window | None = None  # the window at the tried limit, once measured
        self._skip = limiter.limit  # calls left to settle (after the start, or a move of the limit)
        self._latencies: list[float] = []
        self._in_flight = 0
        self._windows_since_up = 0
        self._backoff = 1
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
            busy = window.in_flight >= BUSY * self.limiter.limit
            if self._probe is None:
                self._steady(window, busy)
            else:
                self._probing(window, busy)

    def _steady(self, window: Window, busy: bool) -> None:
        limiter = self.limiter
        self._last = window
        if self.settled is None:
            self.settled = window
        if not busy:
            return  # demand below the limit: nothing to learn about the server
        if self._next is None and window.median_s > RISE * self.settled.median_s:
            self._next = "down"  # the server got slower: is it queueing?
        if self._next is None:
            self._windows_since_up += 1
            if limiter.target < limiter.max_limit and self._windows_since_up >= self._backoff:
                self._next = "up"
        if self._next is not None:
            self._start(self._next)
            self._next = None

    def _start(self, direction: str) -> None:
        limiter = self.limiter
        before = limiter.target
        tried = math.floor(before * PROBE_DOWN) if direction == "down" else math.ceil(before * PROBE_UP)
        tried = max(1, min(limiter.max_limit, tried))
        if tried == before:
            return
        self.probes += 1
        self._probe, self._tried = (direction, before, tried), None
        self._move(tried)

    def _move(self, limit: int) -> None:
        before = self.limiter.target
        self.limiter.set_limit(limit)
        self._skip = max(before, limit)  # the requests sent under the old limit end first

    def _probing(self, window: Window, busy: bool) -> None:
        """The probe's two windows: at the tried limit, then back at the one it left (so the
        reference straddles the probe and a drift of the server's speed cancels out)."""
        direction, before, tried = self._probe
        if self.limiter.target != (tried if self._tried is None else before):
            self._probe = None  # another controller moved the target meanwhile: that decision stands
            return
        if self._tried is None:
            self._tried = window if busy else Window(0.0, 0.0)
            self._move(before)
            return
        self._probe = None
        first, tried_window = self._last, self._tried
        reference = Window(math.sqrt(first.median_s * window.median_s), (first.in_flight + window.in_flight) / 2)
        if direction == "down":
            e = elasticity(reference, tried_window) if busy else None
        else:
            e = elasticity(tried_window, reference) if busy else None
        log.debug(
            "probe %s from %d to %d in flight: median latency %.3f s at %.0f, %.3f s at %.0f; elasticity %s",
            direction, before, tried, tried_window.median_s, tried_window.in_flight, reference.median_s,
            reference.in_flight, "unknown" if e is None else f"{e:.2f}",
        )  # fmt: skip
        self._last = window
        self._windows_since_up = 0
        if e is not None and (e > ELASTIC if direction == "down" else e < ELASTIC):
            self.settled = tried_window  # keep the tried limit, and look further the same way
            self._backoff = 1
            self._next = direction
            self._move(tried)
            return
        self.settled = reference
        if direction == "up":
            self._backoff = min(MAX_BACKOFF, self._backoff * 2)
