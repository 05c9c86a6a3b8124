"""Anthropic's replies streamed as the Messages API's events: the same dataset, the same response
cache entries and the same usage as replies read whole (streaming changes only the wire), against
the test server speaking Anthropic's protocol."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from dd_core import generate
from dd_core.testing.llm_server import OpenAIServer
from tests.core.test_llm_columns import all_types_config
from tests.providers import KEY, KEY_ENV, PRICE, config_for


@pytest.fixture(scope="module")
def server():
    with OpenAIServer(latency_ms=2, api_key=KEY, metrics=False) as running:
        yield running


@pytest.fixture
def fresh(server, monkeypatch):
    server.reset_for_next_test()
    monkeypatch.setenv(KEY_ENV, KEY)
    return server


def cache_entries(folder: Path) -> list[dict]:
    lines = [
        line for path in sorted((folder / "llm-cache").glob("rg_*.jsonl")) for line in path.read_text().splitlines()
    ]
    return sorted((json.loads(line) for line in lines), key=lambda entry: entry["key"])


def streamed_requests(server) -> set[bool]:
    return {entry["stream"] for entry in server.stats()["request_log"]}


@pytest.mark.parametrize("mode", ["tool", "json_schema"])
def test_a_streamed_run_equals_a_whole_one_in_data_cache_and_usage(fresh, tmp_path, mode):
    """Text, structured (through the forced tool, or JSON output) and judge columns."""
    runs = {}
    for stream in (False, True):
        fresh.reset_stats()
        config = config_for(fresh, "anthropic", all_types_config, structured_output=mode, stream=stream, price=PRICE)
        runs[stream] = generate(config, 12, buffer_size=6, artifact_path=tmp_path, dataset_name=f"s{stream}")
        assert streamed_requests(fresh) == {stream}
    whole, streamed = runs[False], runs[True]
    assert pq.read_table(streamed.path / "parquet-files").equals(pq.read_table(whole.path / "parquet-files"))
    assert cache_entries(streamed.path) == cache_entries(whole.path) and len(cache_entries(whole.path)) == 12 * 5
    assert streamed.metadata["llm_spend"] == whole.metadata["llm_spend"]
    usage = streamed.llm_usage["writer"]
    assert usage["invalid_replies"] == usage["abandoned"] == usage["retries"] == 0


def test_streamed_usage_and_cost_are_the_servers_count(fresh, tmp_path):
    """Input tokens with the cache's reads (a top-level cache_control), output tokens from the final
    message_delta: as many as the server counted, priced as such."""
    fresh.set_rate_limits(requests_per_minute=10**6, enforce=False)  # only to log what the server counted
    config = config_for(
        fresh, "anthropic", stream=True, price=PRICE, extra_body={"cache_control": {"type": "ephemeral"}}
    )
    result = generate(config, 6, buffer_size=6, artifact_path=tmp_path)
    counted = sum(arrival["tokens"] for arrival in fresh.rate_limit_log()["arrivals"])
    spend = result.metadata["llm_spend"]["writer"]
    assert streamed_requests(fresh) == {True}
    assert spend["prompt_tokens"] + spend["completion_tokens"] == counted
    expected = (
        spend["prompt_tokens"] * PRICE["input_per_mtok"] + spend["completion_tokens"] * PRICE["output_per_mtok"]
    ) / 1e6
    assert spend["cost_usd"] == pytest.approx(expected)
