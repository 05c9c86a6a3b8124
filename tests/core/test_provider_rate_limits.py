"""Per-minute limits paced from the provider's own headers, with no limit in the config: Azure's
``x-ratelimit-remaining-*`` (counts only, over its one-minute window) and Anthropic's
``anthropic-ratelimit-*`` (limit, remaining, RFC 3339 reset). The server refuses what its bucket
cannot take: once the burst in flight when the bucket ran dry is refused, dd sends no more than
the bucket regains (without the headers' pacing the same runs see 46 and 111 refusals, and the
Azure one fails)."""

from __future__ import annotations

import pytest

from dd_core import generate
from dd_core.testing.llm_server import OpenAIServer
from tests.providers import KEY, KEY_ENV, config_for

PARALLEL = 8
# (requests per minute, the server's window in seconds, rows): a full bucket, then 60 and 30 more
# requests than it holds, at its refill rate (0.1 s and 0.5 s apart). Azure's window is its minute.
CASES = {"anthropic": (60, 6.0, 60), "azure": (120, 60.0, 75)}


@pytest.mark.parametrize("provider", list(CASES))
def test_requests_are_paced_from_the_providers_headers(tmp_path, monkeypatch, provider):
    rpm, window_s, rows = CASES[provider]
    monkeypatch.setenv(KEY_ENV, KEY)
    with OpenAIServer(latency_ms=5, api_key=KEY, metrics=False) as server:
        server.set_rate_limits(requests_per_minute=rpm, window_s=window_s)
        config = config_for(server, provider, max_parallel_requests=PARALLEL)
        result = generate(config, rows, buffer_size=rows, artifact_path=tmp_path)
        arrivals = server.rate_limit_log()["arrivals"]
    admitted = [a["t"] for a in arrivals if a["admitted"]]
    refused = len(arrivals) - len(admitted)
    assert result.num_records == rows and len(admitted) == 2 * rows
    assert refused == result.llm_usage["writer"]["throttled"] <= PARALLEL, refused
