"""max_requests_per_minute and max_tokens_per_minute through ddsynth generate, counted at the server
over every 60 s window (the real window: this test takes a little over a minute)."""

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
