"""Per-model request time: what the Dagster integration plots per row group (issue 11)."""

from __future__ import annotations

import time

from dd_core.orchestration import run_row_group
from dd_core.testing.llm_server import OpenAIServer
from tests.core.test_llm_columns import chain_config

LATENCY_S = 0.04
ROWS = 20


def test_request_seconds_sum_the_time_each_request_took():
    with OpenAIServer(latency_ms=LATENCY_S * 1000) as server:
        config = chain_config(server.base_url)  # two chained llm_text columns, 8 requests in flight at most
        started = time.perf_counter()
        usage = run_row_group(config, 0, ROWS).usage["writer"]
        elapsed = time.perf_counter() - started
    assert usage.calls == 2 * ROWS
    # Each request waits at least the server's latency; at most 8 are in flight at once.
    assert usage.calls * LATENCY_S <= usage.request_seconds <= 8 * elapsed
    assert usage.to_json()["request_seconds"] == usage.request_seconds
    total = type(usage).from_json(usage.to_json())
    total.add(usage)
    assert total.request_seconds == 2 * usage.request_seconds
