"""Anthropic's replies streamed as the Messages API's events: the same dataset, the same response
cache entries and the same usage as replies read whole (streaming changes only the wire), against
the test server speaking Anthropic's protocol."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from dd_core import generate
from dd_core.engine.llm.providers.anthropic_replies import MessageStream, message_completion
from tests.core.test_llm_columns import all_types_config
from tests.providers import PRICE, config_for, server_fixtures


def events_of(message: dict, delta_usage: dict) -> list[dict]:
    """``message`` as Anthropic streams it: each block opened empty, filled in two deltas, closed."""
    start = {**message, "content": [], "stop_reason": None, "usage": {**message["usage"], "output_tokens": 1}}
    events = [{"type": "message_start", "message": start}]
    for index, block in enumerate(message["content"]):
        kind = block["type"]
        if kind == "text":
            opening, pieces = {"type": "text", "text": ""}, [block["text"][:3], block["text"][3:]]
            deltas = [{"type": "text_delta", "text": piece} for piece in pieces]
        elif kind == "tool_use":
            raw = json.dumps(block["input"], indent=1)  # not the way dd writes it: dd parses and re-writes
            opening, deltas = {**block, "input": {}}, [{"type": "input_json_delta", "partial_json": raw[:5]}]
            deltas.append({"type": "input_json_delta", "partial_json": raw[5:]})
        else:
            opening = {"type": "thinking", "thinking": ""}
            deltas = [
                {"type": "thinking_delta", "thinking": block["thinking"]},
                {"type": "signature_delta", "signature": "s"},
            ]
        events.append({"type": "content_block_start", "index": index, "content_block": opening})
        events += [{"type": "ping"}] + [{"type": "content_block_delta", "index": index, "delta": d} for d in deltas]
        events.append({"type": "content_block_stop", "index": index})
    delta = {"stop_reason": message["stop_reason"], "stop_sequence": None}
    events += [{"type": "message_delta", "delta": delta, "usage": delta_usage}, {"type": "future_event"}]
    return [*events, {"type": "message_stop"}]


PROFILE_INPUT = {"name": "Zoë Ångström 🙂", "age": 41, "notes": None, "tags": ["ß", 1.5]}
MESSAGES = {
    "two-text-blocks": (
        [{"type": "text", "text": "Hello "}, {"type": "text", "text": "wörld"}],
        "end_turn",
        {"input_tokens": 12, "output_tokens": 7},
    ),
    "thinking-then-tool": (
        [
            {"type": "thinking", "thinking": "Let me see."},
            {"type": "tool_use", "id": "t1", "name": "profile", "input": PROFILE_INPUT},
            {"type": "tool_use", "id": "t2", "name": "profile", "input": {"name": "second"}},
        ],
        "tool_use",
        {"input_tokens": 3, "cache_creation_input_tokens": 5, "cache_read_input_tokens": 11, "output_tokens": 30},
    ),
    "cut-text": ([{"type": "text", "text": "Once upon a"}], "max_tokens", {"input_tokens": 4, "output_tokens": 3}),
}


@pytest.mark.parametrize("name", MESSAGES)
def test_a_streamed_message_is_the_same_completion_as_the_whole_message(name):
    content, stop_reason, usage = MESSAGES[name]
    message = {"id": "msg_1", "type": "message", "role": "assistant", "content": content}
    message |= {"stop_reason": stop_reason, "usage": usage}
    stream = MessageStream()
    ends = [
        stream.add(json.dumps(event).encode())
        for event in events_of(message, {"output_tokens": usage["output_tokens"]})
    ]
    assert ends == [False] * (len(ends) - 1) + [True]
    assert stream.completion(prompt_estimate=10**6) == message_completion(message)


def test_cumulative_usage_in_message_delta_stands_over_message_starts():
    message = {"content": [{"type": "text", "text": "hi"}], "stop_reason": "end_turn"}
    message["usage"] = {"input_tokens": 100, "cache_read_input_tokens": 50, "output_tokens": 9}
    stream = MessageStream()
    for event in events_of(message, {"input_tokens": 120, "cache_read_input_tokens": None, "output_tokens": 9}):
        stream.add(json.dumps(event).encode())
    assert stream.completion(0)[1:] == (170, 9, False)


server, fresh = server_fixtures()


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
