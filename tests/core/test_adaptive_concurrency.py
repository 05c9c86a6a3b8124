"""Requests in flight follow a server that queues instead of answering 429."""

from __future__ import annotations

import pytest

from dd_core import generate
from dd_core.engine.llm.adaptive import (
    LATENCY_MIN_WINDOW,
    LATENCY_START,
    LatencyController,
    QueueDepthController,
    parse_queue_metrics,
)
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


def test_latency_controller_starts_low_grows_while_latency_is_flat_and_cuts_when_it_climbs():
    limiter = AdaptiveLimiter(1024)
    controller = LatencyController(limiter)
    assert limiter.limit == LATENCY_START

    def window(latency: float) -> None:
        limiter.saturated = True
        for _ in range(max(LATENCY_MIN_WINDOW, 2 * limiter.limit)):
            controller.observe(latency)

    for _ in range(8):
        window(0.4)
    assert limiter.limit == 1024  # doubled up to the maximum
    window(0.4 * 2.5)  # queueing: latency 2.5x the baseline
    assert limiter.limit == 512  # cut by half at most
    window(0.4 * 1.6)
    assert 390 <= limiter.limit <= 400  # cut in proportion (1.25 / 1.6)
    window(0.4)
    assert limiter.limit > 400  # creeping back up by a tenth
    assert controller.slow_start is False


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
