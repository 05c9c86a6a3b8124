"""What is Anthropic's own: the Messages API request dd builds (system on top, max_tokens, the
column's schema as a forced tool or as JSON output, no seed sent), 529 as back-pressure,
cache-read tokens counted, and a results_url on another host never followed with the key."""

from __future__ import annotations

import json
import logging

import orjson
import pytest

from dd_core import generate, load_config
from dd_core.engine.llm.providers.anthropic_messages import MessagesTemplate, wire
from dd_core.engine.llm.providers.anthropic_replies import message_completion
from dd_core.engine.llm.replies import MalformedReply
from tests.core.test_llm_columns import PROFILE, all_types_config
from tests.providers import PRICE, batch_mode, config_for, server_batches, server_fixtures

URL = "http://127.0.0.1:1"


def column_request(mode: str | None, column: int = 4, **model) -> dict:
    """The body dd sends for ``column`` of the all-types config (4: profile, structured)."""
    config = all_types_config(URL)
    config["models"][0].update(provider="anthropic", max_tokens=300, temperature=0.2, **model)
    if mode is not None:
        config["models"][0]["structured_output"] = mode
    loaded = load_config(config)
    template = MessagesTemplate(loaded.models[0], loaded.columns[column])
    payload = template.payload(template.prompt("Be brief.", "A profile, please."), 1234)
    assert json.loads(payload)["seed"] == 1234, "the cell's seed is in the payload: the cache key's source"
    return orjson.loads(wire(payload))


def test_the_request_has_anthropics_shape_and_no_seed():
    body = column_request(None, column=2)  # question: llm_text
    assert body == {
        "model": "test-model",
        "max_tokens": 300,
        "temperature": 0.2,
        "system": "Be brief.",
        "messages": [{"role": "user", "content": "A profile, please."}],
    }


def test_a_structured_column_asks_through_a_forced_tool_by_default():
    body = column_request(None)
    assert body["tools"] == [
        {"name": "profile", "description": "Record the profile of this row.", "input_schema": PROFILE}
    ]
    assert body["tool_choice"] == {"type": "tool", "name": "profile"} and "output_config" not in body


def test_json_schema_mode_asks_for_the_apis_json_output_and_prompt_mode_for_nothing():
    assert column_request("json_schema")["output_config"] == {"format": {"type": "json_schema", "schema": PROFILE}}
    plain = column_request("prompt")
    assert not {"tools", "tool_choice", "output_config"} & set(plain)


def test_extra_body_fields_go_into_the_request():
    assert column_request(None, extra_body={"top_k": 5, "metadata": {"user_id": "u1"}})["top_k"] == 5


@pytest.mark.parametrize(
    ("message", "content", "tokens"),
    [
        ({"content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}, "ab", (3, 2)),
        (
            {"content": [{"type": "thinking", "thinking": "hm"}, {"type": "tool_use", "input": {"x": 1}}]},
            '{"x": 1}',
            (3, 2),
        ),
        ({"content": [{"type": "text", "text": "c"}], "cache": 7}, "c", (10, 2)),
    ],
)
def test_replies_read_as_completions(message, content, tokens):
    usage = {"input_tokens": 3, "output_tokens": 2}
    if message.pop("cache", None):
        usage["cache_read_input_tokens"] = 7
    completion = message_completion({**message, "usage": usage})
    assert (completion.content, completion.prompt_tokens, completion.completion_tokens) == (content, *tokens)


@pytest.mark.parametrize(
    ("message", "words"),
    [
        ([], "the message is a JSON list"),
        ({"content": "text", "usage": {}}, "'content' is string"),
        ({"content": [], "usage": "n/a"}, "'usage' is string"),
        ({"content": [{"type": "tool_use", "input": [1]}], "usage": {}}, "'input' is list"),
        ({"content": [], "usage": {"input_tokens": -1}}, "'usage.input_tokens'"),
    ],
)
def test_odd_messages_are_malformed_replies(message, words):
    with pytest.raises(MalformedReply, match=words):
        message_completion(message)


server, fresh = server_fixtures()


@pytest.mark.parametrize("mode", ["tool", "json_schema"])
def test_every_column_type_in_each_structured_mode(fresh, tmp_path, mode):
    config = config_for(fresh, "anthropic", all_types_config, structured_output=mode)
    result = generate(config, 20, buffer_size=20, artifact_path=tmp_path)
    assert result.num_records == 20 and result.llm_usage["writer"]["invalid_replies"] == 0


def test_a_529_overloaded_error_is_back_pressure(fresh, tmp_path):
    fresh.set_faults([{"kind": "status", "status": 529, "times": 3}])
    result = generate(config_for(fresh, "anthropic"), 10, buffer_size=10, artifact_path=tmp_path)
    usage = result.llm_usage["writer"]
    assert result.num_records == 10 and usage["throttled"] == usage["retries"] == 3 and usage["errors"] == {"529": 3}
    assert usage["lowest_concurrency"] is not None, "the in-flight limit came down"


def test_cache_read_tokens_are_input_tokens(fresh, tmp_path):
    """With a top-level cache_control the server reports half of each prompt as read from its
    cache: dd counts the same input tokens as without it, and as many as the server counted."""
    fresh.set_rate_limits(requests_per_minute=10**6, enforce=False)  # only to log what the server counted
    plain = generate(config_for(fresh, "anthropic", price=PRICE), 6, buffer_size=6, artifact_path=tmp_path)
    counted_plain = sum(a["tokens"] for a in fresh.rate_limit_log()["arrivals"])
    fresh.set_rate_limits(requests_per_minute=10**6, enforce=False)
    config = config_for(fresh, "anthropic", extra_body={"cache_control": {"type": "ephemeral"}}, price=PRICE)
    cached = generate(config, 6, buffer_size=6, artifact_path=tmp_path, dataset_name="cached")
    counted_cached = sum(a["tokens"] for a in fresh.rate_limit_log()["arrivals"])
    spend = cached.metadata["llm_spend"]["writer"]
    assert spend["prompt_tokens"] + spend["completion_tokens"] == counted_cached == counted_plain
    assert spend == plain.metadata["llm_spend"]["writer"]


def test_a_results_url_on_another_host_is_not_followed(fresh, tmp_path, caplog):
    # Nothing listens on port 9 of this host: following results_url would fail every download.
    fresh.set_batch_settings(results_url_base="http://127.0.0.1:9")
    with caplog.at_level(logging.WARNING, logger="dd.batch"):
        result = generate(config_for(fresh, "anthropic", **batch_mode()), 10, buffer_size=10, artifact_path=tmp_path)
    assert result.num_records == 10 and len(server_batches(fresh, "anthropic")) == 2
    assert any("results_url is on another host" in r.getMessage() for r in caplog.records)
