"""How long the server takes to answer: a fixed latency plus a jitter, or lognormal latency, both
fixed per request by its key (so a run is reproducible); optionally a bounded batch, as vLLM serves.

Latency is ``latency_ms`` plus a jitter in [0, ``jitter_ms``], or, with ``latency_sigma`` > 0,
lognormal with median ``latency_ms`` and that sigma (drawn per request from its key and
``latency_seed``). It counts from the request's arrival, so concurrent requests overlap and the
server's own work is part of it, as at a real endpoint. With ``slots=N`` N requests are served at
once and the rest wait in a FIFO queue; a request's latency is then its wait plus its service time.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import math
import statistics
import time

from dd_core.testing.llm_server.stats import Exchange, Stats


@dataclasses.dataclass
class Serving:
    """How the server serves: latency (see the module docstring), batch slots, ``/metrics`` or not."""

    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    latency_sigma: float = 0.0
    latency_seed: int = 0
    slots: int | None = None
    metrics: bool = True

    def __post_init__(self) -> None:
        if min(self.latency_ms, self.jitter_ms, self.latency_sigma) < 0 or not all(
            map(math.isfinite, (self.latency_ms, self.jitter_ms, self.latency_sigma))
        ):
            raise ValueError("latency, jitter and sigma must be finite and not negative")
        if self.slots is not None and self.slots < 1:
            raise ValueError("slots must be at least 1")

    def latency_s(self, key: str) -> float:
        if self.latency_sigma > 0:
            digest = hashlib.sha256(f"{self.latency_seed}/{key}".encode()).digest()
            uniform = (int.from_bytes(digest[:8], "big") + 0.5) / 2**64
            return self.latency_ms / 1000 * math.exp(self.latency_sigma * _STANDARD_NORMAL.inv_cdf(uniform))
        jitter = int(key[:8], 16) / 0xFFFFFFFF * self.jitter_ms
        return (self.latency_ms + jitter) / 1000

    def options(self) -> list[str]:
        """The same settings as command-line options."""
        args = [
            "--latency-ms",
            str(self.latency_ms),
            "--jitter-ms",
            str(self.jitter_ms),
            "--latency-sigma",
            str(self.latency_sigma),
            "--latency-seed",
            str(self.latency_seed),
        ]
        if self.slots is not None:
            args += ["--slots", str(self.slots)]
        return args if self.metrics else [*args, "--no-metrics"]


_STANDARD_NORMAL = statistics.NormalDist()


class Latency:
    """Waits out each request's latency as ``serving`` says (replaceable at runtime, except its
    slots), keeping the queue's depth in ``stats``."""

    def __init__(self, serving: Serving, stats: Stats):
        self.serving = serving
        self._stats = stats
        self._slots = asyncio.Semaphore(serving.slots) if serving.slots else None

    async def wait(self, exchange: Exchange, hold: tuple[str, asyncio.Event] | None = None) -> None:
        """Counted from the request's arrival (so the server's own work is inside it), or with
        slots, the wait for a slot and then the service time. A held request (``hold``: the hold
        rule's name and its release) waits for its release first, in its slot with slots."""
        latency = self.serving.latency_s(exchange.key)
        if self._slots is None:
            await self._held(hold)
            await asyncio.sleep(max(0.0, exchange.t_start + latency - time.monotonic()))
            return
        self._stats.queue_change(0, 1)
        try:
            await self._slots.acquire()
        finally:
            self._stats.queue_change(0, -1)
        self._stats.queue_change(1, 0)
        try:
            await self._held(hold)
            await asyncio.sleep(latency)
        finally:
            self._stats.queue_change(-1, 0)
            self._slots.release()

    async def _held(self, hold: tuple[str, asyncio.Event] | None) -> None:
        if hold is None or hold[1].is_set():
            return
        name, released = hold
        self._stats.held[name] += 1
        try:
            await released.wait()
        finally:
            self._stats.held[name] -= 1

    def queue(self) -> tuple[int, int]:
        """(running, waiting) requests now; without slots every request in flight is running."""
        return (self._stats.running, self._stats.waiting) if self._slots else (self._stats.in_flight, 0)
