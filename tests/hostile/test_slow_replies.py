"""A slow reply is not a dead server. Against a real HTTP server on 127.0.0.1: a reply slower than
the old 60 s default completes with one request; a stream gone silent is given up on, counted
as abandoned and asked again; a server that accepts no connection fails on the connect timeout
with nothing counted as sent; a JSON reply cut at max_tokens is named as cut."""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path

import aiohttp
import pytest

from dd_core import load_config
from dd_core.engine.llm.client import CallFailed, ChatClient
from dd_core.engine.llm.providers import provider_for
from dd_core.engine.llm.runtime import LLMRuntime
from tests.hostile.conftest import llm_config
from tests.hostile.harness import check
from tests.hostile.test_llm_replies import _generate

PROFILE = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
    "required": ["name", "age"],
}


def structured(config: dict) -> dict:
    """``config`` with its LLM column asking for JSON."""
    config["columns"][1] = {
        "name": "profile",
        "type": "llm_structured",
        "model": "writer",
        "prompt": "A profile.",
        "output_schema": PROFILE,
    }
    return config


def usage_of(tmp_path: Path, name: str = "ds") -> dict:
    return json.loads((tmp_path / "out" / name / "metadata.json").read_text())["llm_usage"]["writer"]


def test_a_reply_slower_than_the_old_default_completes_with_one_request(tmp_path, llm, key_env):
    llm.reset_stats()
    llm.set_faults([{"kind": "slow", "slow_s": 61, "times": 1}])  # the old timeout_s was 60 s for all of it
    outcome = _generate(tmp_path, llm_config(llm.base_url), key_env, n=1)
    check(outcome, 0, "1 records", "errors: none")
    stats = llm.stats()
    assert stats["requests_total"] == 1 and stats["faults_injected"]["slow"] == 1
    assert usage_of(tmp_path)["abandoned"] == 0


def test_a_stalled_stream_is_given_up_on_counted_and_asked_again(tmp_path, llm, key_env):
    llm.reset_stats()
    llm.set_faults([{"kind": "stall", "stall_after": 2, "times": 1}])
    config = llm_config(llm.base_url, stream=True, idle_timeout_s=1, price={"input_per_mtok": 1, "output_per_mtok": 2})
    outcome = _generate(tmp_path, config, key_env, n=1)
    check(
        outcome,
        0,
        "1 records",
        "stalled x1",
        "1 abandoned after they reached the server (possibly billed)",
        "1 abandoned, counted as possibly billed",
    )
    assert llm.stats()["requests_total"] == 2
    usage = usage_of(tmp_path)
    assert usage["abandoned"] == 1 and usage["retries"] == 1
    # Possibly billed: the prompt (estimated) and the one content chunk seen before the silence.
    assert usage["abandoned_prompt_tokens"] > 0 and usage["abandoned_completion_tokens"] == 1


@pytest.fixture
def dead_server():
    """A port whose listener accepts nothing: its backlog is full, so a new connection's SYN is
    dropped and a client waits for its connect timeout (as with a host that is down)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        fillers = []
        for _ in range(4):  # fill the accept queue (Linux keeps backlog + 1)
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", port))
            fillers.append(filler)
        try:
            yield f"http://127.0.0.1:{port}/v1"
        finally:
            for filler in fillers:
                filler.close()


def test_a_dead_server_fails_the_endpoint_check_on_the_connect_timeout(tmp_path, dead_server, key_env):
    config = llm_config(dead_server, connect_timeout_s=0.5, max_retries=1, max_retry_wait_s=0.1)
    outcome = _generate(tmp_path, config, key_env, n=1)
    check(outcome, 7, "no connection within 0.5 s (connect_timeout_s)", "Nothing was written")
    assert not (tmp_path / "out").exists()


def test_a_server_dead_during_a_run_fails_its_call_on_the_connect_timeout_with_nothing_sent(
    dead_server, key_env, monkeypatch
):
    """After the endpoint check, a request to a server that died fails on ``connect_timeout_s``
    (not ``timeout_s``), as a retryable failure that reached nothing (no abandoned request)."""
    for name, value in key_env.items():
        monkeypatch.setenv(name, value)
    model = load_config(llm_config(dead_server, connect_timeout_s=0.5)).models[0]

    async def call() -> CallFailed:
        endpoint = LLMRuntime().endpoint(model)
        async with aiohttp.ClientSession() as session:
            client = ChatClient(session, provider_for(model).chat_dialect(endpoint), endpoint.timeouts)
            with pytest.raises(CallFailed) as failed:
                await client.complete(b'{"model":"test-model","messages":[]}')
        return failed.value

    failure = asyncio.run(call())
    assert (failure.code, failure.retryable, failure.abandoned) == ("connect_timeout", True, None)
    assert "no connection within 0.5 s (connect_timeout_s)" in str(failure)


def cut_completion(content: str) -> str:
    message = {"role": "assistant", "content": content}
    return json.dumps(
        {
            "object": "chat.completion",
            "choices": [{"index": 0, "message": message, "finish_reason": "length"}],
            "usage": {"prompt_tokens": 30, "completion_tokens": 16},
        }
    )


def test_a_json_reply_cut_at_max_tokens_is_named_as_cut(tmp_path, llm, key_env):
    llm.set_faults([{"kind": "raw", "status": 200, "body": cut_completion('{"name": "Ann Lee", "ag')}])
    config = structured(llm_config(llm.base_url, max_tokens=16))
    outcome = _generate(tmp_path, config, key_env, n=1)
    check(outcome, 6, "cut at max_tokens (16 tokens): raise max_tokens of model 'writer'")
    assert "reply is not JSON" in outcome.output  # the parse failure stays beside it, for the record


def test_a_stream_cut_at_max_tokens_is_named_as_cut(tmp_path, llm, key_env):
    chunks = [
        {"choices": [{"index": 0, "delta": {"content": '{"name": "A'}, "finish_reason": None}]},
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "length"}]},
        {"choices": [], "usage": {"prompt_tokens": 30, "completion_tokens": 16}},
    ]
    body = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"
    llm.set_faults([{"kind": "raw", "status": 200, "body": body, "headers": {"Content-Type": "text/event-stream"}}])
    config = structured(llm_config(llm.base_url, max_tokens=16, stream=True))
    check(_generate(tmp_path, config, key_env, n=1), 6, "cut at max_tokens (16 tokens)")


@pytest.mark.parametrize(("provider", "hint"), [("openai", True), ("azure", False)])
def test_a_reply_too_slow_twice_names_only_fixes_the_provider_takes(tmp_path, llm, key_env, provider, hint):
    """``stream: true`` is offered as a fix only where replies can stream (Azure's are read whole)."""
    llm.reset_stats()
    llm.set_faults([{"kind": "slow", "slow_s": 3, "times": 2}])
    url, azure = (
        (llm.root_url, {"provider": "azure", "api_version": "2024-10-21"})
        if provider == "azure"
        else (llm.base_url, {})
    )
    config = llm_config(url, timeout_s=1, stream=False, **azure)
    outcome = _generate(tmp_path, config, key_env, n=1)
    check(outcome, 6, "asked a second time with twice the time", "raise timeout_s for model 'writer'")
    assert ("or set stream: true" in outcome.output) is hint
    assert llm.stats()["requests_total"] == 2
