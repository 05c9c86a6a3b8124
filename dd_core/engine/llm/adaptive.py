"""In-flight targets that follow the server, below ``max_parallel_requests``.

Chosen per model when the run starts, from what the server shows of its congestion:

- **queue depth** (preferred): the server's Prometheus ``/metrics``, polled every ``POLL_S``
  (0.25 s): vLLM's ``vllm:num_requests_waiting``/``num_requests_running``, SGLang's
  ``sglang:num_queue_reqs``/``num_running_reqs``, llama.cpp's ``llamacpp:requests_deferred``/
  ``requests_processing`` (``llama-server --metrics``), TGI's ``tgi_queue_size``/
  ``tgi_batch_current_size``. While requests wait beyond a small allowance, the limit is set to
  what the server is actually running of ours plus that allowance; while nothing waits and the
  limit holds requests back, it grows by a tenth. Several processes sharing a server each take
  their proportional share of the queue, so together they converge on the same knee.
- **latency** (a server without such metrics, as hosted providers are): the limit stays at
  ``max_parallel_requests`` unless latency rises with the number in flight over a real window
  (``latency_probe``): the natural spread of a provider's latency is not congestion.

Either way the limit stays within [1, max_parallel_requests]; 429, 503 and 529 answers halve it
(the limiter's own rule).
"""

from __future__ import annotations

import asyncio
import math
from urllib.parse import urlsplit

import aiohttp

from dd_core.engine.llm.latency_probe import LatencyController
from dd_core.engine.llm.limiter import AdaptiveLimiter
from dd_core.log import get_logger

log = get_logger(__name__)

POLL_S = 0.25
#: Requests allowed to wait at the server (a share of those running), so its batch never runs dry.
QUEUE_ALLOWANCE = 0.05
MIN_QUEUE_ALLOWANCE = 2.0
_WAITING = ("vllm:num_requests_waiting", "sglang:num_queue_reqs", "llamacpp:requests_deferred", "tgi_queue_size")
_RUNNING = (
    "vllm:num_requests_running",
    "sglang:num_running_reqs",
    "llamacpp:requests_processing",
    "tgi_batch_current_size",
)


def metrics_url(base_url: str) -> str:
    """vLLM, SGLang and llama.cpp serve ``/metrics`` at the root of the host that serves ``/v1``."""
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


async def follow_server(
    limiter: AdaptiveLimiter, session: aiohttp.ClientSession, base_url: str, *, carried: bool
) -> None:
    """Adapt ``limiter`` to the server behind ``base_url`` until cancelled (a task per model).

    ``carried``: the limit comes from an earlier part of this run, so the latency controller
    need not probe early again.
    """
    url = metrics_url(base_url)
    controller = QueueDepthController(limiter)
    first = True
    while True:
        reading = await _read_queue(session, url)
        if reading is None:
            if first:
                log.debug("%s exposes no queue metrics; following latency instead", url)
                LatencyController(limiter, early_probe=not carried)
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
