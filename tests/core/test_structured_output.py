"""structured_output: json_schema | json_object | tool | prompt, per model; code columns that take
what small open models write; one clear message when a server refuses the chosen way."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest

from dd_core import fingerprint, generate, load_config
from dd_core.config.llm_columns import LLMCodeColumn, LLMStructuredColumn
from dd_core.engine.llm.cells import InvalidReply, instructions, parse_reply, structured_fields
from dd_core.engine.llm.client import ChatClient
from dd_core.engine.llm.providers import provider_for
from dd_core.engine.llm.replies import parse_completion
from dd_core.engine.llm.runtime import LLMRuntime
from dd_core.engine.llm.structured_check import models_to_check, structured_output_issue
from dd_core.testing.llm_server import OpenAIServer
from tests.core.test_llm_columns import PROFILE, all_types_config, chain_config
from tests.providers import KEY, KEY_ENV, config_for
from tests.support import run_dd

REFUSING_ALL_BUT = {
    "json_schema": ("json_object", "tools"),
    "json_object": ("json_schema", "tools"),
    "tool": ("json_schema", "json_object"),
}


@pytest.mark.parametrize("mode", ["json_schema", "json_object", "tool"])
def test_every_column_type_completes_in_each_mode_against_a_server_taking_only_that_mode(tmp_path, mode):
    with OpenAIServer(latency_ms=2, refuse=REFUSING_ALL_BUT[mode]) as server:
        config = all_types_config(server.base_url)
        config["models"][0]["structured_output"] = mode
        result = generate(config, 12, buffer_size=12, artifact_path=tmp_path)
        stats = server.stats()
    usage = result.llm_usage["writer"]
    assert result.num_records == 12 and usage["failed_cells"] == 0 and usage["invalid_replies"] == 0
    assert stats["by_status"] == {"200": 12 * 5 + 1}, "every cell, and the check of the mode before row group 0"
    rows = result.load()
    assert set(rows["profile"][0]) == set(PROFILE["properties"]) and set(rows["verdict"][0]) == {"accuracy", "tone"}


def test_each_mode_asks_for_json_its_own_way():
    col = LLMStructuredColumn(type="llm_structured", name="profile", model="m", prompt="p", output_schema=PROFILE)
    assert structured_fields(col, "json_schema")["response_format"]["json_schema"]["schema"] == PROFILE
    assert structured_fields(col, "json_object") == {"response_format": {"type": "json_object", "schema": PROFILE}}
    tool = structured_fields(col, "tool")
    assert tool["tools"][0]["function"]["parameters"] == PROFILE
    assert tool["tool_choice"] == {"type": "function", "function": {"name": "profile"}}
    assert structured_fields(col, "prompt") == {}
    # Unless the server is given the schema as response_format, the instructions carry it too.
    assert json.dumps(PROFILE, sort_keys=True) not in instructions(col, "json_schema")
    for mode in ("json_object", "tool", "prompt"):
        assert json.dumps(PROFILE, sort_keys=True) in instructions(col, mode)


def test_the_default_mode_keeps_every_fingerprint_and_another_changes_only_json_columns():
    base = fingerprint(load_config(chain_config("http://127.0.0.1:9/v1")))
    for mode in ("json_schema", "prompt"):  # text columns ask for no JSON: the mode changes nothing
        assert fingerprint(load_config(chain_config("http://127.0.0.1:9/v1", structured_output=mode))) == base
    structured = all_types_config("http://127.0.0.1:9/v1")
    before = fingerprint(load_config(structured))
    structured["models"][0]["structured_output"] = "json_object"
    assert fingerprint(load_config(structured)) != before


def test_a_function_call_reply_is_read_as_its_arguments():
    body = {
        "choices": [
            {
                "message": {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [{"type": "function", "function": {"name": "p", "arguments": '{"a": 1}'}}],
                },
                "finish_reason": "tool_calls",
            }
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 4},
    }
    assert parse_completion(json.dumps(body).encode()).content == '{"a": 1}'


@pytest.mark.parametrize(
    "reply",
    [
        '{"mood": "calm"}',
        'Sure! Here it is:\n```json\n{"mood": "calm"}\n```',
        'Here is the JSON: {"mood": "calm"} Hope this helps.',
    ],
)
def test_json_is_found_in_what_a_model_writes_around_it(reply):
    schema = {"type": "object", "properties": {"mood": {"enum": ["calm", "bold"]}}, "required": ["mood"]}
    col = LLMStructuredColumn(type="llm_structured", name="m", model="m", prompt="p", output_schema=schema)
    assert parse_reply(col, reply) == {"mood": "calm"}


@pytest.mark.parametrize(
    ("reply", "code"),
    [
        ("Here:\n```bash\nls -la\n```\nDone.", "ls -la"),
        ("```sh\nls -la\n```", "ls -la"),  # another language: taken
        ("```\nls -la\n```", "ls -la"),  # no language
        ("```python\nprint(1)\n```\nand\n```bash\nls\n```", "ls"),  # the asked language first
        ("ls -la /var/log\n", "ls -la /var/log"),  # nothing but the code
        ("```bash\nls -la\ndf -h", "ls -la\ndf -h"),  # a fence never closed
    ],
)
def test_code_columns_take_what_small_models_write(reply, code):
    col = LLMCodeColumn(type="llm_code", name="c", model="m", prompt="p", language="bash")
    assert parse_reply(col, reply) == code


@pytest.mark.parametrize("reply", ["", "  \n", "```bash\n```"])
def test_a_code_reply_without_code_is_invalid(reply):
    col = LLMCodeColumn(type="llm_code", name="c", model="m", prompt="p", language="bash")
    with pytest.raises(InvalidReply):
        parse_reply(col, reply)


def check(server: OpenAIServer, mode: str):
    config = load_config({**all_types_config(server.base_url)})
    model = config.models[0].model_copy(update={"structured_output": mode})

    async def run():
        async with aiohttp.ClientSession() as session:
            endpoint = LLMRuntime().endpoint(model)
            client = ChatClient(session, provider_for(model).chat_dialect(endpoint), endpoint.timeouts)
            return await structured_output_issue(client, model, server.base_url)

    return asyncio.run(run())


def test_a_server_refusing_the_chosen_mode_gets_one_message_naming_the_option():
    with OpenAIServer(refuse=("json_schema",)) as server:
        issue = check(server, "json_schema")
        assert check(server, "json_object") is None and check(server, "tool") is None
        assert server.stats()["by_status"] == {"400": 1, "200": 3}, "one refused request, then one without the mode"
    assert issue.field == "models.structured_output"
    assert "structured_output: json_schema" in issue.message and "json_object, tool, prompt" in issue.message
    assert "model 'writer'" in issue.message and "'json_schema' is not supported" in issue.message


def test_generate_stops_before_any_row_group_when_the_server_refuses_the_mode(tmp_path):
    """Through the command: one message naming the option (exit 2), two small requests, nothing written."""
    with OpenAIServer(refuse=("json_schema",)) as server:
        config = all_types_config(server.base_url)
        config["models"][0]["structured_output"] = "json_schema"
        path = tmp_path / "config.json"
        path.write_text(json.dumps(config))
        done = run_dd("generate", path, "-n", 12, "--artifact-path", tmp_path / "out")
        stats = server.stats()
    assert done.returncode == 2, done.stderr
    assert "structured_output: json_schema" in done.stderr and "json_object, tool, prompt" in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "out").exists()
    assert stats["by_status"] == {"400": 1, "200": 1}, "the refused request and the same without the mode"


@pytest.mark.parametrize(
    "mode, refused, others",
    [("tool", "tools", "json_schema, prompt"), ("json_schema", "output_config", "tool, prompt")],
)
def test_an_anthropic_server_refusing_the_mode_is_named_with_anthropics_own_modes(tmp_path, mode, refused, others):
    """The check asks the way the provider's own requests do (tools and tool_choice, or
    output_config), and names the modes that provider takes."""
    with OpenAIServer(api_key=KEY, refuse=(refused,)) as server:
        config = config_for(server, "anthropic", all_types_config, structured_output=mode)
        path = tmp_path / "config.json"
        path.write_text(json.dumps(config))
        done = run_dd("generate", path, "-n", 12, "--artifact-path", tmp_path / "out", env={KEY_ENV: KEY})
        stats = server.stats()
    assert done.returncode == 2, done.stderr
    said = " ".join(done.stderr.split())
    assert f"structured_output: {mode}" in said and f"set structured_output to one of {others} for this model" in said
    assert f"{refused}: Extra inputs are not permitted" in said and KEY not in done.stderr + done.stdout
    assert stats["by_status"] == {"400": 1, "200": 1} and not (tmp_path / "out").exists()


def test_a_server_refusing_everything_is_not_blamed_on_the_mode():
    with OpenAIServer() as server:
        server.set_faults([{"kind": "status", "status": 400}])
        assert check(server, "json_schema") is None
        server.set_faults([{"kind": "status", "status": 500}])
        assert check(server, "json_schema") is None


def test_only_online_models_asking_for_json_are_checked():
    config = all_types_config("http://127.0.0.1:9/v1")
    assert [m.alias for m in models_to_check(load_config(config))] == ["writer"]
    assert models_to_check(load_config(chain_config("http://127.0.0.1:9/v1"))) == []
    config["models"][0]["batch"] = True
    assert models_to_check(load_config(config)) == []
