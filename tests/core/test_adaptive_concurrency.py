"""Requests in flight follow a server that queues instead of answering 429."""

from __future__ import annotations

import asyncio
import heapq
import math
import random

import aiohttp
import pytest

from dd_core import generate
from dd_core.engine.llm.adaptive import QueueDepthController, follow_server, parse_queue_metrics
from dd_core.engine.llm.latency_probe import Window as LatencyWindow
from dd_core.engine.llm.latency_probe import elasticity
from dd_core.engine.llm.limiter import AdaptiveLimiter
from dd_core.testing.llm_server import OpenAIServer
from tests.core.test_llm_columns import chain_config

VLLM = """# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="m a"} 250.0
vllm:num_requests_running{engine="1",model_name="m a"} 6.0
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="m a"} 31.0
vllm:num_requests_waiting{engine="1",model_name="m a"} 1
vllm:num_requests_waiting_total 99
"""


def test_queue_gauges_are_read_from_prometheus_text_and_odd_values_are_ignored():
    assert parse_queue_metrics(VLLM) == (32.0, 256.0)
    assert parse_queue_metrics("sglang:num_queue_reqs 4\nsglang:num_running_reqs 12\n") == (4.0, 12.0)
    llama_cpp = (
        "# TYPE llamacpp:requests_processing gauge\nllamacpp:requests_processing 4\nllamacpp:requests_deferred 9\n"
    )
    assert parse_queue_metrics(llama_cpp) == (9.0, 4.0)
    assert parse_queue_metrics("tgi_queue_size 3\ntgi_batch_current_size 32\n") == (3.0, 32.0)
    hostile = "vllm:num_requests_waiting NaN\nvllm:num_requests_waiting -3\nvllm:num_requests_waiting inf\nvllm:num_requests_waiting {x\nvllm:num_requests_waiting 2 1700000000\n"
    assert parse_queue_metrics(hostile) == (2.0, 0.0)
    assert parse_queue_metrics("<html>not found</html>") is None
    assert parse_queue_metrics("") is None


def test_queue_depth_sets_the_limit_to_what_the_server_runs_of_ours():
    limiter = AdaptiveLimiter(1024)
    limiter.in_flight = 1024  # everything we sent is at the server: 256 running, 768 waiting
    QueueDepthController(limiter).observe(waiting=768, running=256)
    assert 256 <= limiter.limit <= 256 + 13  # the batch plus an allowance of 5%
    # Half the server's load is someone else's: we take our share of the queue.
    limiter = AdaptiveLimiter(1024)
    limiter.in_flight = 512
    QueueDepthController(limiter).observe(waiting=768, running=256)
    assert 128 <= limiter.limit <= 128 + 7
    # Nothing waits and the limit holds requests back: it grows, never past the maximum.
    limiter.saturated = True
    QueueDepthController(limiter).observe(waiting=0, running=100)
    assert limiter.limit > 128
    limiter.limit, limiter.saturated = 1024, True
    QueueDepthController(limiter).observe(waiting=0, running=1024)
    assert limiter.limit == 1024


def simulate(limiter: AdaptiveLimiter, service, calls: int, *, slots: int | None = None) -> dict:
    """Clients in virtual time keeping ``limiter.limit`` requests in flight (demand never runs
    out) against a server that serves ``slots`` at once first come first served (None: all),
    each call taking ``service(i)`` seconds of service. Returns calls/s, the time-weighted mean
    limit and the lowest limit seen after the first call started."""
    now, sent, done, area = 0.0, 0, 0, 0.0
    ends: list[tuple[float, float]] = []  # (end, start) of the calls in flight
    free = [0.0] * slots if slots else None  # when each slot is free again
    lowest = limiter.limit
    while done < calls:
        while sent < calls and limiter.try_acquire():
            begin = max(now, heapq.heappop(free)) if free is not None else now
            end = begin + service(sent)
            if free is not None:
                heapq.heappush(free, end)
            heapq.heappush(ends, (end, now))
            sent += 1
        if sent < calls:
            limiter.saturated = True  # requests are waiting for the limit
        end, start = heapq.heappop(ends)
        area += limiter.limit * (end - now)
        now = end
        limiter.release(end - start)
        done += 1
        lowest = min(lowest, limiter.limit)
    return {"calls_per_s": done / now, "mean_limit": area / now, "lowest": lowest, "limit": limiter.limit}


def lognormal(median_s: float, sigma: float, seed: int = 1):
    rng = random.Random(seed)
    return lambda _: rng.lognormvariate(math.log(median_s), sigma)


def latency_following(max_parallel_requests: int) -> AdaptiveLimiter:
    """A limiter as a run sets it up for a server without /metrics (what follow_server does)."""
    limiter = AdaptiveLimiter(max_parallel_requests)

    async def follow() -> None:
        with OpenAIServer(metrics=False) as server:
            async with aiohttp.ClientSession() as session:
                await follow_server(limiter, session, server.base_url, carried=False)

    asyncio.run(follow())
    return limiter


@pytest.mark.parametrize("parallel", [256, 1024])
def test_without_metrics_the_natural_spread_of_latency_never_shrinks_the_limit(parallel):
    """Hosted providers: lognormal latency (median 0.4 s, sigma 1), no queue. The limit stays
    at max_parallel_requests (one early probe at 3/4 aside): throughput is that of a fixed limit."""
    limiter = latency_following(parallel)
    run = simulate(limiter, lognormal(0.4, 1.0), 150 * parallel)
    fixed = simulate(AdaptiveLimiter(parallel), lognormal(0.4, 1.0), 150 * parallel)
    assert run["lowest"] >= 0.75 * parallel and run["limit"] == parallel, run
    assert run["mean_limit"] >= 0.98 * parallel, run
    assert run["calls_per_s"] >= 0.97 * fixed["calls_per_s"], (run, fixed)


def test_without_metrics_a_queue_behind_a_bounded_batch_is_found_by_probing():
    """A server serving 64 at once and queueing the rest: latency rises with the number in
    flight, so the limit comes down near the batch and throughput stays at capacity."""
    limiter = latency_following(512)
    service = lognormal(0.1, 1.0)
    run = simulate(limiter, service, 200_000, slots=64)
    capacity = 64 / (0.1 * math.exp(0.5))
    assert 48 <= run["limit"] <= 96, run
    assert run["calls_per_s"] >= 0.9 * capacity, (run, capacity)


def test_a_latency_rise_with_the_number_in_flight_is_told_from_noise():
    window = LatencyWindow
    assert elasticity(window(0.8, 1000), window(0.6, 750)) == pytest.approx(1.0)  # all of it queued
    assert elasticity(window(0.4, 1000), window(0.4, 750)) == pytest.approx(0.0)  # none of it
    assert elasticity(window(0.8, 1000), window(0.6, 950)) is None  # in-flight counts too close to tell
    assert elasticity(window(0.0, 1000), window(0.6, 750)) is None


@pytest.fixture(scope="module")
def bounded():
    """A server serving 4 requests at once; the rest queue."""
    with OpenAIServer(latency_ms=20, slots=4) as server:
        yield server


def test_the_server_queue_stays_short_with_adaptive_concurrency(tmp_path, bounded):
    waiting = {}
    for adaptive in (True, False):
        bounded.reset_stats()
        config = chain_config(bounded.base_url, max_parallel_requests=32, adaptive_concurrency=adaptive)
        result = generate(config, 300, buffer_size=100, artifact_path=tmp_path, dataset_name=f"adaptive_{adaptive}")
        stats = bounded.stats()
        assert result.num_records == 300 and stats["succeeded"] == 600
        waiting[adaptive] = stats["mean_waiting"]
    assert waiting[False] > 20  # a fixed 32 against 4 slots keeps ~28 waiting
    assert waiting[True] < waiting[False] / 3, waiting
