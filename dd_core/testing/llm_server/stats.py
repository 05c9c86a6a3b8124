"""What the server tells tests about its work: the stats of ``GET /_control/stats`` and the queue
gauges a vLLM server reports at ``GET /metrics``."""

from __future__ import annotations

import dataclasses
import time
from collections import Counter, deque
from collections.abc import Sequence
from typing import Any

from aiohttp import web

from dd_core.testing.llm_server.faults import FAULT_KINDS

REQUEST_LOG_SIZE = 10_000


@dataclasses.dataclass
class Exchange:
    """What the stats keep about one chat request."""

    t_start: float
    status: int | None = None  # None: no response was sent (disconnect, client gone)
    key: str | None = None
    model: str | None = None
    fault: str | None = None
    succeeded: bool = False
    prompt: str | None = None  # the last message's first 200 characters
    stream: bool = False  # the reply was asked for as a stream of events


class Stats:
    """Counters since the last reset, the queue's depth over time, and the log of recent requests."""

    def __init__(self) -> None:
        self.in_flight = 0
        self.running = 0
        self.waiting = 0
        #: Requests waiting at each hold rule, by name (see ``faults.Faults``).
        self.held: Counter[str] = Counter()
        self.reset()

    def reset(self) -> None:
        self.since = self.last_change = time.monotonic()
        self.waiting_seconds = self.running_seconds = 0.0
        self.max_waiting = self.waiting
        self.requests_total = 0
        self.by_status: Counter[str] = Counter()
        self.faults_injected = dict.fromkeys(FAULT_KINDS, 0)
        self.success_keys: Counter[str] = Counter()
        self.max_in_flight = self.in_flight
        self.auth_header_requests = 0
        self.request_log: deque[dict[str, Any]] = deque(maxlen=REQUEST_LOG_SIZE)

    def begin(self, request: web.Request) -> Exchange:
        self.requests_total += 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        if "Authorization" in request.headers:
            self.auth_header_requests += 1
        return Exchange(t_start=time.monotonic())

    def queue_change(self, running: int, waiting: int) -> None:
        """Account the time spent at the previous queue depth, then move to the new one."""
        now = time.monotonic()
        self.running_seconds += self.running * (now - self.last_change)
        self.waiting_seconds += self.waiting * (now - self.last_change)
        self.last_change = now
        self.running += running
        self.waiting += waiting
        self.max_waiting = max(self.max_waiting, self.waiting)

    def finish(self, exchange: Exchange) -> None:
        self.in_flight -= 1
        if exchange.status is not None:
            self.by_status[str(exchange.status)] += 1
        if exchange.succeeded:
            self.success_keys[exchange.key] += 1
        self.request_log.append(
            {
                "t_start": exchange.t_start,
                "t_end": time.monotonic(),
                "status": exchange.status,
                "key": exchange.key,
                "model": exchange.model,
                "fault": exchange.fault,
                "prompt": exchange.prompt,
                "stream": exchange.stream,
            }
        )

    def snapshot(self) -> dict[str, Any]:
        return {
            "requests_total": self.requests_total,
            "by_status": dict(self.by_status),
            "faults_injected": dict(self.faults_injected),
            "succeeded": sum(self.success_keys.values()),
            "success_keys": dict(self.success_keys),
            "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight,
            "held": {name: count for name, count in self.held.items() if count},
            # Time-averaged queue since the last reset (requests waiting for a slot, and served).
            "mean_waiting": self._mean(self.waiting_seconds, self.waiting),
            "mean_running": self._mean(self.running_seconds, self.running),
            "max_waiting": self.max_waiting,
            "auth_header_requests": self.auth_header_requests,
            "request_log": list(self.request_log),
        }

    def _mean(self, accumulated: float, current: int) -> float:
        now = time.monotonic()
        elapsed = now - self.since
        return (accumulated + current * (now - self.last_change)) / elapsed if elapsed > 0 else 0.0


def vllm_metrics(models: Sequence[str], running: int, waiting: int) -> str:
    """vLLM's queue gauges in Prometheus' text format (one label set per listed model, the
    counts on the first)."""
    lines = []
    for name, value, help_text in (
        ("vllm:num_requests_running", running, "Number of requests in model execution batches."),
        ("vllm:num_requests_waiting", waiting, "Number of requests waiting to be processed."),
    ):
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge"]
        lines += [f'{name}{{model_name="{model}"}} {float(value if i == 0 else 0)}' for i, model in enumerate(models)]
    return "\n".join(lines) + "\n"
