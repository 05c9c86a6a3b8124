"""A real HTTP server on 127.0.0.1 that misbehaves: replies of the wrong shape, absurd numbers,
JSON nested 100,000 levels, huge bodies, servers that echo the API key, and long Retry-After
waits. Each odd reply is an invalid reply for its cell (retried, then the row dropped), never a
crash; the key is never stored or printed; waits are logged and bounded by the cell's budget."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.hostile.conftest import KEY_ENV, llm_config, write_config
from tests.hostile.harness import SECRET, assert_no_secret_in_files, check, invoke

NESTED = "[" * 100_000 + "]" * 100_000


def completion(content: str = "fine", usage: str = '{"prompt_tokens": 3, "completion_tokens": 2}') -> str:
    message = json.dumps(content)
    return (
        '{"id": "x", "object": "chat.completion", "choices": [{"index": 0, "message": {"role": "assistant", '
        f'"content": {message}}}, "finish_reason": "stop"}}], "usage": {usage}}}'
    )


# (id, raw 200 body, words the failure names)
BODIES = [
    ("usage-is-text", completion(usage='"n/a"'), ["'usage' is string, not an object"]),
    ("tokens-1e400", completion(usage='{"prompt_tokens": 1e400}'), ["'usage.prompt_tokens'", "not a token count"]),
    ("tokens-negative", completion(usage='{"prompt_tokens": -1}'), ["'usage.prompt_tokens' is '-1'"]),
    ("tokens-bool", completion(usage='{"completion_tokens": true}'), ["'usage.completion_tokens' is 'True'"]),
    ("tokens-text", completion(usage='{"prompt_tokens": "12"}'), ["'usage.prompt_tokens' is '12'"]),
    ("tokens-fraction", completion(usage='{"completion_tokens": 1.5}'), ["'usage.completion_tokens' is '1.5'"]),
    ("tokens-NaN", completion(usage='{"prompt_tokens": NaN}'), ["'usage.prompt_tokens' is 'nan'"]),
    ("nested-100000", NESTED, ["nested too deeply"]),
    ("nested-in-usage", completion(usage='{"prompt_tokens": ' + NESTED + "}"), ["nested too deeply"]),
    ("body-is-a-list", "[]", ["the body is a JSON list, not an object"]),
    ("body-is-a-string", '"hello"', ["the body is a JSON string"]),
    ("body-is-a-number", "42", ["the body is a JSON number"]),
    ("body-is-null", "null", ["the body is a JSON null"]),
    ("choices-empty", '{"choices": []}', ["'choices' is list, not a non-empty list"]),
    ("choices-text", '{"choices": "many"}', ["'choices' is string"]),
    ("choice-a-number", '{"choices": [1]}', ["'choices[0].message' is null"]),
    ("message-missing", '{"choices": [{"index": 0}]}', ["'choices[0].message' is null"]),
    ("message-a-list", '{"choices": [{"message": []}]}', ["'choices[0].message' is list"]),
    (
        "content-null",
        '{"choices": [{"message": {"role": "assistant", "content": null}}]}',
        ["'choices[0].message.content' is null"],
    ),
    ("content-number", '{"choices": [{"message": {"content": 42}}]}', ["'choices[0].message.content' is number"]),
    (
        "content-parts",
        '{"choices": [{"message": {"content": [{"type": "text", "text": "hi"}]}}]}',
        ["'choices[0].message.content' is list"],
    ),
    ("html", "<html><body>502 Bad Gateway</body></html>", ["not JSON"]),
    ("empty", "", ["not JSON"]),
    ("truncated", '{"choices": [{"message": {"content": "he', ["not JSON"]),
    ("huge-number-literal", completion(usage='{"prompt_tokens": ' + "9" * 5000 + "}"), ["not JSON"]),
]


def _generate(tmp_path: Path, config: dict, env: dict, n: int = 4, name: str = "ds"):
    path = write_config(tmp_path / "llm.yaml", config)
    return invoke(
        "generate",
        path,
        "-n",
        n,
        "--buffer-size",
        n,
        "--artifact-path",
        tmp_path / "out",
        "--dataset-name",
        name,
        env=env,
    )


@pytest.mark.parametrize(("body", "words"), [c[1:] for c in BODIES], ids=[c[0] for c in BODIES])
def test_every_reply_odd_fails_the_row_group_with_its_reason(tmp_path, llm, key_env, body, words):
    llm.set_faults([{"kind": "raw", "status": 200, "body": body}])
    outcome = _generate(tmp_path, llm_config(llm.base_url), key_env)
    check(outcome, 6, "row group 0 failed", "malformed x", *words)
    assert_no_secret_in_files(tmp_path)


ONCE = ["usage-is-text", "tokens-1e400", "nested-100000", "body-is-a-list", "content-null", "html"]


@pytest.mark.parametrize("case", ONCE)
def test_one_odd_reply_is_retried_and_the_run_succeeds(tmp_path, llm, key_env, case):
    body = next(c[1] for c in BODIES if c[0] == case)
    llm.set_faults([{"kind": "raw", "status": 200, "body": body, "times": 1}])
    outcome = _generate(tmp_path, llm_config(llm.base_url), key_env)
    check(outcome, 0, "Generated 1 row group(s)", "4 records", "errors: malformed x1")


def chunk(delta: dict, finish: str | None = None, **extra) -> str:
    event = {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    return "data: " + json.dumps({**event, **extra}) + "\n\n"


GOOD_START = chunk({"role": "assistant"}) + chunk({"content": "Hello "})
# (id, raw 200 text/event-stream body, words the failure names): a streamed reply of every odd shape.
STREAMS = [
    ("chunk-not-json", GOOD_START + "data: {not json\n\n", ["not JSON"]),
    ("chunk-a-list", GOOD_START + "data: [1, 2]\n\n", ["a stream chunk is a JSON list"]),
    ("no-finish", GOOD_START + "data: [DONE]\n\n", ["the stream ended before its last chunk"]),
    ("cut-off", GOOD_START, ["the stream ended before its last chunk"]),
    ("error-event", GOOD_START + 'data: {"error": {"message": "overloaded"}}\n\n', ["ended the stream with an error"]),
    (
        "usage-is-text",
        GOOD_START + chunk({}, "stop") + 'data: {"choices": [], "usage": "n/a"}\n\n',
        ["'usage' is string, not an object"],
    ),
    (
        "usage-1e400",
        GOOD_START + chunk({}, "stop") + 'data: {"choices": [], "usage": {"prompt_tokens": 1e400}}\n\n',
        ["'usage.prompt_tokens'", "not a token count"],
    ),
    ("nested-100000", GOOD_START + "data: " + NESTED + "\n\n", ["nested too deeply"]),
    ("a-5-MB-line", GOOD_START + "data: " + "x" * (5 * 2**20) + "\n\n", ["too long"]),
]


@pytest.mark.parametrize(("body", "words"), [c[1:] for c in STREAMS], ids=[c[0] for c in STREAMS])
def test_every_odd_stream_fails_the_row_group_with_its_reason(tmp_path, llm, key_env, body, words):
    llm.set_faults([{"kind": "raw", "status": 200, "body": body, "headers": {"Content-Type": "text/event-stream"}}])
    outcome = _generate(tmp_path, llm_config(llm.base_url, stream=True), key_env)
    check(outcome, 6, "row group 0 failed", "malformed x", *words)


def test_a_bottomless_stream_is_refused_past_the_reply_limit(tmp_path, llm, key_env):
    endless = GOOD_START + chunk({"content": "x" * 1000}) * 17_000
    llm.set_faults([{"kind": "raw", "status": 200, "body": endless, "headers": {"Content-Type": "text/event-stream"}}])
    check(
        _generate(tmp_path, llm_config(llm.base_url, stream=True), key_env),
        6,
        "more than the 16,777,216 bytes a reply may have",
    )


def test_a_huge_body_is_refused_without_reading_it(tmp_path, llm, key_env):
    llm.set_faults([{"kind": "raw", "status": 200, "body": "x" * 1024, "repeat": 17 * 1024}])
    check(_generate(tmp_path, llm_config(llm.base_url), key_env), 6, "more than the 16,777,216 bytes a reply may have")


def test_structured_reply_nested_100000_levels_is_an_invalid_reply(tmp_path, llm, key_env):
    config = llm_config(llm.base_url)
    config["columns"][1] = {
        "name": "profile",
        "type": "llm_structured",
        "model": "writer",
        "prompt": "About {{ topic }}",
        "output_schema": {"type": "object", "properties": {"a": {"type": "integer"}}},
        "max_invalid_retries": 1,
    }
    llm.set_faults([{"kind": "raw", "status": 200, "body": completion(NESTED)}])
    check(_generate(tmp_path, config, key_env), 6, "2 invalid replies", "nested too deeply")


def test_structured_reply_with_a_huge_integer_is_an_invalid_reply(tmp_path, llm, key_env):
    config = llm_config(llm.base_url)
    config["columns"][1] = {
        "name": "profile",
        "type": "llm_structured",
        "model": "writer",
        "prompt": "About {{ topic }}",
        "output_schema": {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]},
        "max_invalid_retries": 0,
    }
    llm.set_faults([{"kind": "raw", "status": 200, "body": completion('{"a": 123456789012345678901234567890}')}])
    check(_generate(tmp_path, config, key_env), 6, "does not fit in 64 bits")


# --- secrets ------------------------------------------------------------------------------

ECHO = '{"error": {"message": "Incorrect API key provided: {echo}", "type": "invalid_request_error"}}'


@pytest.mark.parametrize("status", [401, 403, 500])
def test_a_server_that_echoes_the_key_in_errors(tmp_path, llm, key_env, status):
    llm.set_faults([{"kind": "raw", "status": status, "body": ECHO, "echo_header": "Authorization"}])
    outcome = _generate(tmp_path, llm_config(llm.base_url), key_env)
    check(outcome, 6, f"HTTP {status}", "Incorrect API key provided: Bearer ***")
    assert_no_secret_in_files(tmp_path)


def test_an_echoed_key_in_a_retried_error_is_not_stored(tmp_path, llm, key_env):
    llm.set_faults([{"kind": "raw", "status": 500, "body": ECHO, "echo_header": "Authorization", "times": 1}])
    check(_generate(tmp_path, llm_config(llm.base_url), key_env), 0, "Generated 1 row group(s)")
    meta = json.loads((tmp_path / "out" / "ds" / "metadata.json").read_text())
    assert meta["llm_usage"]["writer"]["sample_error"] == "HTTP 500: Incorrect API key provided: Bearer ***"
    assert_no_secret_in_files(tmp_path)


def test_an_echoed_key_in_a_completion_is_not_stored(tmp_path, llm, key_env):
    llm.set_faults(
        [{"kind": "raw", "status": 200, "body": completion("my key is {echo}"), "echo_header": "Authorization"}]
    )
    check(_generate(tmp_path, llm_config(llm.base_url), key_env), 0, "Generated 1 row group(s)")
    folder = tmp_path / "out" / "ds"
    assert set(pq.read_table(folder / "parquet-files" / "batch_00000.parquet").column("question").to_pylist()) == {
        "my key is Bearer ***"
    }
    assert_no_secret_in_files(tmp_path)


def test_the_key_is_scrubbed_from_logs(tmp_path, llm, key_env, caplog):
    caplog.set_level(logging.INFO)
    llm.set_faults([{"kind": "raw", "status": 503, "body": ECHO, "echo_header": "Authorization", "times": 1}])
    check(_generate(tmp_path, llm_config(llm.base_url), key_env), 0)
    assert SECRET not in caplog.text and "retry 1 of 1" in caplog.text


def test_a_key_with_a_line_break(tmp_path, llm):
    outcome = _generate(tmp_path, llm_config(llm.base_url), {KEY_ENV: SECRET + "\nX-Injected: 1"})
    check(outcome, 2, f"${KEY_ENV}", "contains a line break", "the key itself is not shown")
    assert not (tmp_path / "out").exists()


def test_an_unset_key_writes_nothing(tmp_path, llm):
    env = {KEY_ENV: None}
    check(_generate(tmp_path, llm_config(llm.base_url), env), 2, f"${KEY_ENV}, which is not set")
    assert not (tmp_path / "out").exists()
    assert llm.stats()["requests_total"] >= 0


def test_a_base_url_without_scheme_is_a_config_error(tmp_path, llm, key_env):
    config = llm_config(llm.base_url.replace("http://", ""))
    check(_generate(tmp_path, config, key_env), 2, "not an http:// or https:// URL")


# --- waits --------------------------------------------------------------------------------


def test_a_long_retry_after_fails_the_cells_at_once(tmp_path, llm, key_env):
    """Retry-After: 3600 used to mean five silent 60 s sleeps per cell."""
    llm.set_faults([{"kind": "status", "status": 429, "retry_after": 3600}])
    config = llm_config(llm.base_url, max_retries=5)  # the default max_retry_wait_s: 60 s
    check(
        _generate(tmp_path, config, key_env),
        6,
        "429 x4",
        "gave up waiting",
        "asked to wait 3600 s (Retry-After)",
        "retry_wait_budget_s of 300 s",
    )


def test_the_wait_budget_is_per_cell_and_configurable(tmp_path, llm, key_env, caplog):
    caplog.set_level(logging.INFO)
    llm.set_faults([{"kind": "status", "status": 503, "retry_after": 0.2}])
    config = llm_config(llm.base_url, max_retries=10, max_retry_wait_s=1, retry_wait_budget_s=0.5)
    check(_generate(tmp_path, config, key_env, n=2), 6, "gave up waiting", "retry_wait_budget_s of 0.5 s")
    waits = [r.getMessage() for r in caplog.records if "wait budget used" in r.getMessage()]
    assert waits and all("model writer (test-model): HTTP 503; retry" in w and "in 0.2 s" in w for w in waits)
    assert len(waits) == 2 * 2  # two waits of 0.2 s fit in 0.5 s, for each of the two cells


def test_only_retries_that_happen_are_logged_and_only_slept_waits_count(tmp_path, llm, key_env, caplog):
    """Regression: after the last attempt tenacity asked for one more wait before its stop check,
    so the log announced "retry 3 of 2" (a retry that never happened), its wait was counted
    against the cell's budget, and here the cell failed as "gave up waiting" instead of with the
    server's answer."""
    caplog.set_level(logging.INFO)
    llm.reset_stats()
    llm.set_faults([{"kind": "status", "status": 503, "retry_after": 0.01}])
    config = llm_config(llm.base_url, max_retries=2, retry_wait_budget_s=0.025)
    outcome = _generate(tmp_path, config, key_env, n=1)
    check(outcome, 6, "HTTP 503", "503 x3")  # the first attempt and its two retries
    assert "gave up waiting" not in outcome.output
    waits = [r.getMessage() for r in caplog.records if "wait budget used" in r.getMessage()]
    assert [w.split("; ")[1].split(" in ")[0] for w in waits] == ["retry 1 of 2", "retry 2 of 2"]
    assert llm.stats()["by_status"].get("503") == 3


@pytest.mark.parametrize("value", ["nan", "-5", "Wed, 21 Oct 2015 07:28:00 GMT", "1e400", "soon"])
def test_odd_retry_after_values_fall_back_to_backoff(tmp_path, llm, key_env, value):
    llm.set_faults(
        [
            {
                "kind": "raw",
                "status": 429,
                "body": '{"error": {"message": "slow down"}}',
                "headers": {"Retry-After": value},
                "times": 1,
            }
        ]
    )
    check(_generate(tmp_path, llm_config(llm.base_url), key_env), 0, "Generated 1 row group(s)", "429 x1")


def test_a_nested_error_body_is_no_crash(tmp_path, llm, key_env):
    llm.set_faults([{"kind": "raw", "status": 503, "body": NESTED}])
    check(_generate(tmp_path, llm_config(llm.base_url), key_env), 6, "HTTP 503")


def test_a_non_retryable_status_fails_without_retrying(tmp_path, llm, key_env):
    llm.set_faults([{"kind": "status", "status": 418}])
    check(_generate(tmp_path, llm_config(llm.base_url), key_env), 6, "418 x4", "row group 0 failed")
    assert llm.stats()["by_status"].get("418") == 4


def test_a_hanging_server_is_a_timeout_then_a_retry(tmp_path, llm, key_env):
    # An hour's hang; every other request must beat the timeout however busy the machine.
    llm.set_faults([{"kind": "hang", "times": 1}])
    check(_generate(tmp_path, llm_config(llm.base_url, timeout_s=5), key_env), 0, "errors: timeout x1")


def test_a_dropped_connection_is_a_retry(tmp_path, llm, key_env):
    llm.set_faults([{"kind": "disconnect", "times": 1}])
    check(_generate(tmp_path, llm_config(llm.base_url), key_env), 0, "errors: network x1")


def test_a_planted_link_in_the_llm_cache_is_refused(tmp_path, llm, key_env):
    config = llm_config(llm.base_url)
    check(_generate(tmp_path, config, key_env, n=4), 0)
    folder = tmp_path / "out" / "ds"
    finished = folder / "parquet-files" / "batch_00000.parquet"
    data = finished.read_bytes()
    path = write_config(tmp_path / "llm.yaml", config)
    os.symlink(finished, folder / "llm-cache" / "rg_00001.jsonl")
    outcome = invoke(
        "generate",
        path,
        "-n",
        8,
        "--buffer-size",
        4,
        "--artifact-path",
        tmp_path / "out",
        "--dataset-name",
        "ds",
        env=key_env,
    )
    check(outcome, 4, "rg_00001.jsonl is a symbolic link", "never writes through a link")
    assert finished.read_bytes() == data


def test_a_prompt_past_its_render_limits_leaves_no_folder_and_calls_nothing(tmp_path, llm, key_env):
    config = llm_config(llm.base_url)
    config["columns"][1]["prompt"] = "Ask about {{ topic * 10**7 }}."
    llm.reset_stats()
    check(_generate(tmp_path, config, key_env), 2, "column 'question'", "field 'prompt'", "render limits")
    assert not (tmp_path / "out" / "ds").exists()
    assert llm.stats()["requests_total"] == 0


def test_an_expression_over_llm_output_past_its_limits_leaves_no_folder(tmp_path, llm, key_env):
    config = llm_config(llm.base_url)
    config["columns"].append({"name": "loud", "type": "expression", "expr": "{{ question * 10**6 }}"})
    check(_generate(tmp_path, config, key_env), 2, "column 'loud'", "render limits")
    assert not (tmp_path / "out" / "ds").exists()


ODD_JSON = [
    '{"a": 1, "a": 2}',
    "1e400",
    "-1e400",
    "-0",
    "-0.0",
    "0.1",
    "1.7976931348623157e308",
    "5e-324",
    "2.2250738585072011e-308",
    "123456789012345678901234567890",
    "18446744073709551615",
    "-9223372036854775809",
    "9" * 5000,
    '"\\ud800"',
    '"\\udfff x"',
    '"\\ud83d\\ude00"',
    '"é ✓ \\u2028"',
    ' \t\n{"a": [1, 2.5, true, false, null]} \r\n',
    "NaN",
    "Infinity",
    "-Infinity",
    '{"t": NaN}',
    "[" * 500 + "]" * 500,
    "[" * 2000 + "]" * 2000,
    '"a\x01b"',
    "{} x",
    "",
    "[1,]",
    '{"a":1,}',
    "01",
    "1.",
    ".5",
    "'a'",
    "\ufeff{}",
    "{}\x00",
]


@pytest.mark.parametrize("text", ODD_JSON, ids=range(len(ODD_JSON)))
def test_a_reply_reads_as_json_reads_it(text):
    """Replies are read by orjson, and by json where orjson refuses: every body gives json's value,
    or a malformed reply where json fails (nothing orjson alone would accept or read otherwise)."""
    from dd_core.engine.llm.replies import MalformedReply, parse_json

    for body in {text.encode("utf-8", "surrogatepass"), text.encode("utf-16")} if text else {b""}:
        try:
            expected = json.loads(body)
        except (ValueError, RecursionError):
            with pytest.raises(MalformedReply):
                parse_json(body)
            continue
        got = parse_json(body)
        assert repr(got) == repr(expected) and type(got) is type(expected)
