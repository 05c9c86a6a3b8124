"""max_requests_per_minute and max_tokens_per_minute through ddsynth generate, counted at the server:
paced evenly, and never more than the limit over every 60 s window (the real window: these tests
take a little over a minute and half a minute)."""

from __future__ import annotations

import pytest

from dd_core import generate
from dd_core.testing.llm_server import OpenAIServer
from dd_core.testing.llm_server.rate_limits import max_in_any_window
from tests.core.test_llm_columns import chain_config

RPM, TPM = 20, 900


def test_request_and_token_limits_hold_over_any_60s_window_across_two_workers(tmp_path):
    with OpenAIServer(latency_ms=10) as server:
        # Count everything that arrives (nothing refused): the limits must hold by dd alone.
        server.set_rate_limits(requests_per_minute=10**6, tokens_per_minute=10**9, enforce=False)
        price = {"input_per_mtok": 3.0, "output_per_mtok": 3.0}  # one price: the arrival log has total tokens
        config = chain_config(
            server.base_url, max_tokens=20, max_requests_per_minute=RPM, max_tokens_per_minute=TPM, price=price
        )
        result = generate(config, 12, buffer_size=6, artifact_path=tmp_path, workers=2)
        arrivals = server.rate_limit_log()["arrivals"]
    assert result.num_records == 12 and len(arrivals) == 24
    most_requests, most_tokens = max_in_any_window(arrivals, 60.0)
    assert most_requests <= RPM and most_tokens <= TPM, (most_requests, most_tokens)
    span = max(a["t"] for a in arrivals) - min(a["t"] for a in arrivals)
    assert span >= 60.0, "24 requests at 20 per minute cannot all start within one minute"
    # Online cost: the tokens the server counted, at the price.
    assert result.metadata["llm_cost_usd"] == pytest.approx(sum(a["tokens"] for a in arrivals) * 3.0 / 1e6, rel=1e-9)


def test_a_per_minute_limit_is_paced_evenly_not_let_out_at_once(tmp_path):
    """max_requests_per_minute 120 with 16 requests allowed in flight: at most 6 (5%) at once,
    then one every 0.5 s, on the server's arrival times (it once sent 60 within 0.3 s)."""
    with OpenAIServer(latency_ms=10) as server:
        server.set_rate_limits(requests_per_minute=10**6, enforce=False)  # count arrivals, refuse nothing
        config = chain_config(server.base_url, max_parallel_requests=16, max_requests_per_minute=120)
        result = generate(config, 30, buffer_size=30, artifact_path=tmp_path)
        arrivals = sorted(a["t"] for a in server.rate_limit_log()["arrivals"])
    assert result.num_records == 30 and len(arrivals) == 60
    assert sum(t < arrivals[0] + 0.3 for t in arrivals) <= 6
    # Over any run of arrivals: at most burst + rate x its span, give or take one request for
    # the moment between a request's admission and its arrival (same machine: milliseconds).
    burst = max(
        (j - i + 1) - 2.0 * (arrivals[j] - arrivals[i]) for i in range(len(arrivals)) for j in range(i, len(arrivals))
    )
    assert burst <= 6 + 1, burst
    assert max_in_any_window([{"t": t, "tokens": 0, "admitted": True} for t in arrivals], 60.0)[0] <= 120
