"""Anthropic's streamed replies gone wrong, through the real command against a real server speaking
the Messages API: a stream gone silent, an ``error`` event mid-stream, a reply cut at max_tokens,
events of the wrong shape, a bottomless stream and a server echoing the key into a delta. Each is
one clear failure (or a retry that cures it), no traceback, no secret stored."""

from __future__ import annotations

import json

import pytest

from tests.hostile.conftest import llm_config
from tests.hostile.harness import assert_no_secret_in_files, check
from tests.hostile.test_llm_replies import _generate
from tests.hostile.test_slow_replies import structured, usage_of


def anthropic(base_url: str, **model) -> dict:
    return llm_config(base_url, **{"provider": "anthropic", "max_tokens": 256, "stream": True, **model})


def event(data: dict) -> str:
    return f"event: {data['type']}\ndata: {json.dumps(data)}\n\n"


def start(input_tokens: int = 30) -> str:
    message = {"id": "msg_1", "type": "message", "role": "assistant", "content": [], "stop_reason": None}
    usage = {"input_tokens": input_tokens, "output_tokens": 1}
    return event({"type": "message_start", "message": {**message, "usage": usage}})


def block(index: int, content_block: dict) -> str:
    return event({"type": "content_block_start", "index": index, "content_block": content_block})


def delta(index: int, **fields) -> str:
    return event({"type": "content_block_delta", "index": index, "delta": fields})


def text(piece: str) -> str:
    return delta(0, type="text_delta", text=piece)


def end(stop_reason: str = "end_turn", output_tokens: int = 5) -> str:
    finish = {"type": "message_delta", "delta": {"stop_reason": stop_reason}, "usage": {"output_tokens": output_tokens}}
    return event({"type": "content_block_stop", "index": 0}) + event(finish) + event({"type": "message_stop"})


GOOD_START = start() + block(0, {"type": "text", "text": ""}) + event({"type": "ping"}) + text("Hello ")


def raw_stream(body: str, **rule) -> dict:
    return {"kind": "raw", "status": 200, "body": body, "headers": {"Content-Type": "text/event-stream"}, **rule}


def test_a_stalled_anthropic_stream_is_given_up_on_counted_and_asked_again(tmp_path, llm, key_env):
    llm.reset_stats()
    # message_start, content_block_start, ping and one text_delta, then silence.
    llm.set_faults([{"kind": "stall", "stall_after": 4, "times": 1}])
    config = anthropic(llm.base_url, idle_timeout_s=1, price={"input_per_mtok": 1, "output_per_mtok": 2})
    outcome = _generate(tmp_path, config, key_env, n=1)
    check(outcome, 0, "1 records", "stalled x1", "1 abandoned after they reached the server (possibly billed)")
    assert llm.stats()["requests_total"] == 2
    usage = usage_of(tmp_path)
    assert usage["abandoned"] == 1 and usage["retries"] == 1
    assert usage["abandoned_prompt_tokens"] > 0 and usage["abandoned_completion_tokens"] == 1


def test_an_error_event_mid_stream_is_retried(tmp_path, llm, key_env):
    overloaded = event({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
    llm.set_faults([raw_stream(GOOD_START + overloaded, times=1)])
    outcome = _generate(tmp_path, anthropic(llm.base_url), key_env, n=1)
    check(outcome, 0, "1 records")
    usage = usage_of(tmp_path)
    assert usage["errors"] == {"overloaded_error": 1} and usage["retries"] == usage["throttled"] == 1
    assert usage["sample_error"] == "the server ended the stream with an error: overloaded_error: Overloaded"


def test_an_error_event_that_no_retry_cures_fails_with_it(tmp_path, llm, key_env):
    refused = event({"type": "error", "error": {"type": "invalid_request_error", "message": "prompt is too long"}})
    llm.reset_stats()
    llm.set_faults([raw_stream(GOOD_START + refused)])
    outcome = _generate(tmp_path, anthropic(llm.base_url), key_env, n=1)
    check(outcome, 6, "invalid_request_error: prompt is too long")
    assert llm.stats()["requests_total"] == 1, "not retried: the same request would be refused again"


@pytest.mark.parametrize(
    "reply",
    [
        pytest.param(
            block(0, {"type": "tool_use", "id": "t", "name": "profile", "input": {}})
            + delta(0, type="input_json_delta", partial_json='{"name": "Ann')
            + delta(0, type="input_json_delta", partial_json=' Lee", "ag'),
            id="tool-input",
        ),
        pytest.param(block(0, {"type": "text", "text": ""}) + text('{"name": "Ann Lee", "ag'), id="text"),
    ],
)
def test_a_stream_cut_at_max_tokens_is_named_as_cut(tmp_path, llm, key_env, reply):
    llm.set_faults([raw_stream(start() + reply + end("max_tokens", 16))])
    config = structured(anthropic(llm.base_url, max_tokens=16))
    check(_generate(tmp_path, config, key_env, n=1), 6, "cut at max_tokens (16 tokens): raise max_tokens")


# (id, raw 200 text/event-stream body, words the failure names): Anthropic streams of every odd shape.
STREAMS = [
    ("event-not-json", GOOD_START + "event: content_block_delta\ndata: {not json\n\n", ["not JSON"]),
    ("event-a-list", GOOD_START + "data: [1, 2]\n\n", ["a stream event is a JSON list"]),
    ("no-stop", GOOD_START + event({"type": "message_stop"}), ["the stream ended before its last event"]),
    ("cut-off", GOOD_START, ["the stream ended before its last event"]),
    ("no-message-start", GOOD_START.replace(start(), "") + end(), ["the stream did not begin with message_start"]),
    (
        "usage-a-string",
        GOOD_START.replace('"output_tokens": 1}', '"output_tokens": 1}, "x": 1').replace(
            '"usage": {"input_tokens": 30, "output_tokens": 1}', '"usage": "n/a"'
        )
        + end(),
        ["'message.usage' is string"],
    ),
    ("delta-a-list", GOOD_START + event({"type": "content_block_delta", "index": 0, "delta": []}), ["'delta' is list"]),
    ("text-a-number", GOOD_START + delta(0, type="text_delta", text=42) + end(), ["a text_delta carries number"]),
    ("tokens-1e400", GOOD_START + end(output_tokens=10**400), ["'usage.output_tokens'", "not a token count"]),
    (
        "tool-input-a-list",
        start()
        + block(0, {"type": "tool_use", "id": "t", "name": "question", "input": {}})
        + delta(0, type="input_json_delta", partial_json="[1, 2]")
        + end("tool_use"),
        ["a tool_use block's 'input' is list"],
    ),
    ("a-5-MB-line", GOOD_START + "data: " + "x" * (5 * 2**20) + "\n\n", ["too long"]),
]


@pytest.mark.parametrize(("body", "words"), [c[1:] for c in STREAMS], ids=[c[0] for c in STREAMS])
def test_every_odd_anthropic_stream_fails_the_row_group_with_its_reason(tmp_path, llm, key_env, body, words):
    llm.set_faults([raw_stream(body)])
    outcome = _generate(tmp_path, anthropic(llm.base_url), key_env)
    check(outcome, 6, "row group 0 failed", "malformed x", *words)
    assert_no_secret_in_files(tmp_path)


def test_a_bottomless_anthropic_stream_is_refused_past_the_reply_limit(tmp_path, llm, key_env):
    llm.set_faults([raw_stream(GOOD_START + text("x" * 1000) * 17_000)])
    check(_generate(tmp_path, anthropic(llm.base_url), key_env), 6, "more than the 16,777,216 bytes a reply may have")


def test_a_key_echoed_into_a_delta_is_never_stored(tmp_path, llm, key_env):
    llm.set_faults(
        [raw_stream(GOOD_START + text("your key is {echo}, ") + text("bye") + end(), echo_header="x-api-key")]
    )
    check(_generate(tmp_path, anthropic(llm.base_url), key_env, n=2), 0, "2 records")
    assert_no_secret_in_files(tmp_path)
    cached = (tmp_path / "out" / "ds" / "llm-cache" / "rg_00000.jsonl").read_text()
    assert "Hello your key is ***, bye" in cached
