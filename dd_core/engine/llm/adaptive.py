"""In-flight targets that follow the server, for servers that queue instead of answering 429.

A self-hosted server (vLLM, SGLang) serves a bounded batch and queues the rest: past that knee
more requests in flight only lengthen the queue (and every reply's latency), they add no
throughput. Two signals find the knee, chosen per model when the run starts:

- **queue depth** (preferred): the server's Prometheus ``/metrics`` (``vllm:num_requests_waiting``
  and ``vllm:num_requests_running``; SGLang's ``sglang:num_queue_reqs``/``num_running_reqs``),
  polled every ``POLL_S`` (0.25 s). While requests wait beyond a small allowance, the limit is set to what
  the server is actually running of ours plus that allowance; while nothing waits and the limit
  holds requests back, it grows by a tenth. Several processes sharing a server each take their
  proportional share of the queue, so together they converge on the same knee.
- **latency** (when the server has no such metrics): Vegas-style, from the median latency of
  windows of calls against the lowest window median seen: the limit starts low and doubles
  while latency stays flat, is cut in proportion when latency climbs more than half again
  above it, and otherwise creeps up by a tenth while it holds requests back.

Either way the limit stays within [1, max_parallel_requests]; 429 handling is the limiter's own.
"""

from __future__ import annotations

import asyncio
import math
import statistics
from urllib.parse import urlsplit

import aiohttp

from dd_core.engine.llm.limiter import AdaptiveLimiter
from dd_core.log import get_logger

log = get_logger(__name__)

POLL_S = 0.25
#: Requests allowed to wait at the server (a share of those running), so its batch never runs dry.
QUEUE_ALLOWANCE = 0.05
MIN_QUEUE_ALLOWANCE = 2.0
_WAITING = ("vllm:num_requests_waiting", "sglang:num_queue_reqs")
_RUNNING = ("vllm:num_requests_running", "sglang:num_running_reqs")

LATENCY_START = 16
LATENCY_MIN_WINDOW = 256
LATENCY_CUT = 1.5  # window median above this multiple of the baseline: queueing
LATENCY_FLAT = 1.25  # below this multiple: room to grow


def metrics_url(base_url: str) -> str:
    """vLLM serves ``/metrics`` at the root of the host that serves ``/v1``."""
    parts = urlsplit(base_url)
    return f"{parts.scheme}://{parts.netloc}/metrics"


def parse_queue_metrics(text: str) -> tuple[float, float] | None:
    """(waiting, running) summed over label sets, or None when the text has no queue gauge."""
    waiting = running = 0.0
    found = False
    for line in text.splitlines():
        if not line or line[0] == "#":
            continue
        name, _, rest = line.partition("{") if "{" in line.split(" ", 1)[0] else line.partition(" ")
        value = rest.rsplit("}", 1)[-1].split()
        if not value:
            continue
        try:
            number = float(value[0])
        except ValueError:
            continue
        if not math.isfinite(number) or number < 0:
            continue
        if name in _WAITING:
            waiting += number
            found = True
        elif name in _RUNNING:
            running += number
    return (waiting, running) if found else None


class QueueDepthController:
    def __init__(self, limiter: AdaptiveLimiter):
        self.limiter = limiter

    def observe(self, waiting: float, running: float) -> None:
        limiter = self.limiter
        ours = limiter.in_flight
        allowance = max(MIN_QUEUE_ALLOWANCE, QUEUE_ALLOWANCE * running)
        if waiting > allowance:
            share = min(1.0, ours / (running + waiting)) if running + waiting else 0.0
            target = ours - share * waiting + share * allowance
            if target < limiter.limit:
                limiter.set_limit(math.ceil(target))
        elif limiter.saturated and waiting <= allowance / 2:
            limiter.set_limit(limiter.limit + max(1, limiter.limit // 10))
        limiter.saturated = False


class LatencyController:
    def __init__(self, limiter: AdaptiveLimiter, *, slow_start: bool = True):
        self.limiter = limiter
        self.slow_start = slow_start
        self.baseline: float | None = None
        self._window: list[float] = []
        if slow_start:
            limiter.set_limit(min(limiter.limit, LATENCY_START))
        limiter.saturated = False
        limiter.on_latency = self.observe

    def observe(self, seconds: float) -> None:
        self._window.append(seconds)
        # Windows of a few hundred calls: the median of a lognormal (sigma 1) sample of 256 is
        # within ~8% of the true one, so noise alone rarely looks like a queue.
        if len(self._window) >= max(LATENCY_MIN_WINDOW, 2 * self.limiter.limit):
            median = statistics.median(self._window)
            self._window.clear()
            self._decide(median)

    def _decide(self, median: float) -> None:
        limiter = self.limiter
        self.baseline = median if self.baseline is None else min(self.baseline, median)
        ratio = median / self.baseline if self.baseline > 0 else 1.0
        if ratio > LATENCY_CUT:
            self.slow_start = False
            limiter.set_limit(limiter.limit * max(0.5, LATENCY_FLAT / ratio))
        elif ratio < LATENCY_FLAT and limiter.saturated:
            limiter.set_limit(limiter.limit * 2 if self.slow_start else limiter.limit + max(1, limiter.limit // 10))
        limiter.saturated = False


async def follow_server(
    limiter: AdaptiveLimiter, session: aiohttp.ClientSession, base_url: str, *, carried: bool
) -> None:
    """Adapt ``limiter`` to the server behind ``base_url`` until cancelled (a task per model).

    ``carried``: the limit comes from an earlier row group of this run, so the latency
    controller need not start low again.
    """
    url = metrics_url(base_url)
    controller = QueueDepthController(limiter)
    first = True
    while True:
        reading = await _read_queue(session, url)
        if reading is None:
            if first:
                log.debug("%s exposes no queue metrics; following latency instead", url)
                LatencyController(limiter, slow_start=not carried)
                return
        else:
            controller.observe(*reading)
        first = False
        await asyncio.sleep(POLL_S)


async def _read_queue(session: aiohttp.ClientSession, url: str) -> tuple[float, float] | None:
    try:
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=2.0)) as response:
            if response.status != 200:
                return None
            text = (await response.content.read(4 * 2**20)).decode("utf-8", "replace")
    except (TimeoutError, aiohttp.ClientError, UnicodeError):
        return None
    return parse_queue_metrics(text)
