"""The test server speaks Azure OpenAI and Anthropic as they speak: paths, headers, API versions,
error bodies, rate-limit headers, batch lifecycles and result files, seen from a plain HTTP client."""

from __future__ import annotations

import datetime
import json
import time

import httpx
import pytest

from dd_core.testing.llm_server import OpenAIServer
from tests.core.test_llm_columns import PROFILE
from tests.support import wait_for

KEY = "sk-server-test-key-0123456789"
AZURE_CHAT = "/openai/deployments/test-model/chat/completions"
VERSION = {"api-version": "2024-10-21"}
ANTHROPIC = {"x-api-key": KEY, "anthropic-version": "2023-06-01"}
MESSAGE = {"model": "claude-test", "max_tokens": 64, "messages": [{"role": "user", "content": "Say hi."}]}


@pytest.fixture(scope="module")
def server():
    with OpenAIServer(api_key=KEY, models=("test-model", "claude-test")) as running:
        yield running


@pytest.fixture
def http(server):
    server.reset_for_next_test()
    server.clear_rate_limits()
    with httpx.Client(base_url=server.root_url, trust_env=False, timeout=30) as client:
        yield client


def chat_body(content: str = "Say hi.") -> dict:
    return {"messages": [{"role": "user", "content": content}]}


# --- Azure OpenAI ----------------------------------------------------------------------


def test_azure_chat_takes_the_key_or_a_token_and_adds_its_filter_results(http):
    for auth in ({"api-key": KEY}, {"Authorization": f"Bearer {KEY}"}):
        reply = http.post(AZURE_CHAT, params=VERSION, headers=auth, json=chat_body())
        assert reply.status_code == 200, reply.text
        body = reply.json()
        assert body["choices"][0]["message"]["content"] and body["usage"]["prompt_tokens"] == 2
        assert body["choices"][0]["content_filter_results"]["hate"] == {"filtered": False, "severity": "safe"}
        assert body["prompt_filter_results"][0]["prompt_index"] == 0


@pytest.mark.parametrize(
    ("path", "params", "headers", "status", "error"),
    [
        (AZURE_CHAT, {}, {"api-key": KEY}, 404, {"code": "404", "message": "Resource not found"}),
        (
            AZURE_CHAT,
            {"api-version": "latest"},
            {"api-key": KEY},
            404,
            {"code": "404", "message": "Resource not found"},
        ),
        (AZURE_CHAT, VERSION, {"api-key": "wrong"}, 401, {"code": "401", "message": "Incorrect API key provided."}),
        (AZURE_CHAT, VERSION, {"Authorization": f"Bearer {KEY}x"}, 401, None),
        ("/openai/deployments/nowhere/chat/completions", VERSION, {"api-key": KEY}, 404, None),
    ],
)
def test_azure_refusals_have_azures_shape(http, path, params, headers, status, error):
    reply = http.post(path, params=params, headers=headers, json=chat_body())
    assert reply.status_code == status
    body = reply.json()["error"]
    assert set(body) == {"code", "message"}
    if error is not None:
        assert body == error
    if "nowhere" in path:
        assert body["code"] == "DeploymentNotFound"


def test_azure_sends_remaining_counts_only_and_a_429_with_retry_after_ms(http, server):
    server.set_rate_limits(requests_per_minute=2, window_s=60)
    replies = [http.post(AZURE_CHAT, params=VERSION, headers={"api-key": KEY}, json=chat_body()) for _ in range(3)]
    assert [r.status_code for r in replies] == [200, 200, 429]
    first = {k: v for k, v in replies[0].headers.items() if k.startswith("x-ratelimit")}
    assert first == {"x-ratelimit-remaining-requests": "1"}
    refused = replies[2]
    assert int(refused.headers["retry-after"]) >= 1 and 0 < int(refused.headers["retry-after-ms"]) <= 30_000
    assert refused.json()["error"]["code"] == "429" and "Please retry after" in refused.json()["error"]["message"]


def azure(http, method, path, params: dict | None = None, **kwargs):
    return http.request(
        method, "/openai" + path, params={**VERSION, **(params or {})}, headers={"api-key": KEY}, **kwargs
    )


def upload(http, lines: list[dict]) -> dict:
    content = "".join(json.dumps(line) + "\n" for line in lines)
    reply = azure(http, "POST", "/files", data={"purpose": "batch"}, files={"file": ("in.jsonl", content)})
    assert reply.status_code == 200, reply.text
    return reply.json()


def azure_line(i: int, model: str = "test-model", url: str = "/chat/completions") -> dict:
    return {"custom_id": f"r{i}", "method": "POST", "url": url, "body": {"model": model, **chat_body(f"Q{i}?")}}


def test_an_azure_batch_goes_from_pending_file_to_validating_to_completed(http, server):
    server.set_batch_settings(validating_s=0.2, failure_share=0.3, seed=2)
    file = upload(http, [azure_line(i) for i in range(10)])
    assert file["status"] == "pending"
    assert azure(http, "GET", f"/files/{file['id']}").json()["status"] == "processed"
    body = {"input_file_id": file["id"], "endpoint": "/chat/completions", "completion_window": "24h"}
    created = azure(http, "POST", "/batches", json=body).json()
    assert created["status"] == "Validating" and created["request_counts"] == {
        "total": None,
        "completed": None,
        "failed": None,
    }
    assert datetime.datetime.fromisoformat(created["created_at"]).tzinfo is not None
    wait_for(lambda: azure(http, "GET", f"/batches/{created['id']}").json()["status"] == "completed", 30, "the batch")
    done = azure(http, "GET", f"/batches/{created['id']}").json()
    counts = done["request_counts"]
    assert counts["total"] == 10 and counts["failed"] > 0 and counts["completed"] + counts["failed"] == 10
    errors = azure(http, "GET", f"/files/{done['error_file_id']}/content").text.splitlines()
    assert {json.loads(line)["response"]["body"]["error"]["code"] for line in errors} == {"500"}
    assert azure(http, "GET", "/batches", params={"limit": 10}).json()["data"][0]["id"] == created["id"]


@pytest.mark.parametrize(
    ("lines", "code"),
    [
        ([azure_line(0, url="/v1/chat/completions")], "invalid_request"),
        ([azure_line(0, model="gpt-nowhere")], "model_not_found"),
        ([azure_line(0), azure_line(1, model="claude-test")], "inconsistent_model"),
    ],
)
def test_an_azure_batch_of_bad_lines_fails(http, lines, code):
    file = upload(http, lines)
    body = {"input_file_id": file["id"], "endpoint": "/chat/completions", "completion_window": "24h"}
    created = azure(http, "POST", "/batches", json=body).json()
    wait_for(lambda: azure(http, "GET", f"/batches/{created['id']}").json()["status"] == "failed", 30, "a failed batch")
    assert azure(http, "GET", f"/batches/{created['id']}").json()["errors"]["data"][0]["code"] == code


# --- Anthropic -------------------------------------------------------------------------


def messages(http, body: dict, headers: dict = ANTHROPIC) -> httpx.Response:
    return http.post("/v1/messages", headers=headers, json=body)


def test_anthropic_answers_a_message_with_content_blocks_and_usage(http):
    reply = messages(http, {**MESSAGE, "system": "You are terse."})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["type"] == "message" and body["role"] == "assistant" and body["stop_reason"] == "end_turn"
    assert body["content"][0]["type"] == "text" and body["usage"]["input_tokens"] == 5
    assert body["usage"]["cache_read_input_tokens"] == 0
    cached = messages(http, {**MESSAGE, "cache_control": {"type": "ephemeral"}}).json()["usage"]
    assert cached["cache_read_input_tokens"] == 1 and cached["input_tokens"] == 1


def test_anthropic_answers_a_forced_tool_with_a_tool_use_block_and_json_output_with_json(http):
    tool = {"name": "profile", "input_schema": PROFILE}
    body = messages(http, {**MESSAGE, "tools": [tool], "tool_choice": {"type": "tool", "name": "profile"}}).json()
    (block,) = body["content"]
    assert body["stop_reason"] == "tool_use" and block["type"] == "tool_use" and block["name"] == "profile"
    assert set(block["input"]) == set(PROFILE["required"])
    fmt = {"format": {"type": "json_schema", "schema": PROFILE}}
    text = messages(http, {**MESSAGE, "output_config": fmt}).json()["content"][0]["text"]
    assert set(json.loads(text)) == set(PROFILE["required"])


def stream_events(reply: httpx.Response) -> list[dict]:
    """The events of a streamed answer, each checked to be named as its data's type."""
    assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/event-stream")
    events = []
    for block in reply.text.strip().split("\n\n"):
        name, data = block.split("\n")
        event = json.loads(data.removeprefix("data: "))
        assert name == f"event: {event['type']}"
        events.append(event)
    return events


def test_anthropic_streams_the_same_message_as_its_events(http, server):
    body = {**MESSAGE, "system": "You are terse.", "cache_control": {"type": "ephemeral"}}
    whole = messages(http, body).json()
    events = stream_events(messages(http, {**body, "stream": True}))
    kinds = [e["type"] for e in events]
    assert kinds[:3] == ["message_start", "content_block_start", "ping"]
    assert kinds[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    deltas = [e["delta"] for e in events if e["type"] == "content_block_delta"]
    assert len(deltas) > 3 and "".join(d["text"] for d in deltas) == whole["content"][0]["text"]
    start, end = events[0]["message"]["usage"], events[-2]["usage"]
    assert {**start, **end} == whole["usage"] and events[-2]["delta"]["stop_reason"] == "end_turn"
    assert [entry["stream"] for entry in server.stats()["request_log"]] == [False, True]


def test_anthropic_streams_a_tool_input_as_input_json_deltas(http):
    tool = {"name": "profile", "input_schema": PROFILE}
    body = {**MESSAGE, "tools": [tool], "tool_choice": {"type": "tool", "name": "profile"}}
    (block,) = messages(http, body).json()["content"]
    events = stream_events(messages(http, {**body, "stream": True}))
    assert events[1]["content_block"] == {**block, "id": events[1]["content_block"]["id"], "input": {}}
    pieces = [e["delta"]["partial_json"] for e in events if e["type"] == "content_block_delta"]
    assert json.loads("".join(pieces)) == block["input"] and events[-2]["delta"]["stop_reason"] == "tool_use"


@pytest.mark.parametrize(
    ("change", "headers", "status", "kind", "words"),
    [
        ({"seed": 7}, ANTHROPIC, 400, "invalid_request_error", "seed: Extra inputs are not permitted"),
        ({"max_tokens": None}, ANTHROPIC, 400, "invalid_request_error", "max_tokens"),
        (
            {"messages": [{"role": "system", "content": "x"}]},
            ANTHROPIC,
            400,
            "invalid_request_error",
            "top-level 'system'",
        ),
        ({"temperature": 1.5}, ANTHROPIC, 400, "invalid_request_error", "temperature"),
        ({"stream": "yes"}, ANTHROPIC, 400, "invalid_request_error", "stream: Input should be a valid boolean"),
        ({}, {"x-api-key": KEY}, 400, "invalid_request_error", "anthropic-version: header is required"),
        ({}, {**ANTHROPIC, "x-api-key": "wrong"}, 401, "authentication_error", "Incorrect API key"),
    ],
)
def test_anthropic_refusals_have_anthropics_shape(http, change, headers, status, kind, words):
    body = {k: v for k, v in {**MESSAGE, **change}.items() if v is not None}
    reply = messages(http, body, headers)
    assert reply.status_code == status
    error = reply.json()
    assert error["type"] == "error" and error["error"]["type"] == kind and words in error["error"]["message"]
    assert error["request_id"].startswith("req_")


def test_anthropic_rate_limit_headers_and_429_and_529(http, server):
    server.set_rate_limits(requests_per_minute=2, window_s=60)
    replies = [messages(http, MESSAGE) for _ in range(3)]
    assert [r.status_code for r in replies] == [200, 200, 429]
    headers = replies[0].headers
    assert (headers["anthropic-ratelimit-requests-limit"], headers["anthropic-ratelimit-requests-remaining"]) == (
        "2",
        "1",
    )
    reset = datetime.datetime.fromisoformat(headers["anthropic-ratelimit-requests-reset"]).timestamp()
    assert time.time() < reset <= time.time() + 61
    assert replies[2].json()["error"]["type"] == "rate_limit_error" and int(replies[2].headers["retry-after"]) >= 1
    server.clear_rate_limits()
    server.set_faults([{"kind": "status", "status": 529, "times": 1}])
    overloaded = messages(http, MESSAGE)
    assert overloaded.status_code == 529 and overloaded.json()["error"]["type"] == "overloaded_error"


def batch_request(i: int, **params) -> dict:
    return {
        "custom_id": f"req-{i}",
        "params": {**MESSAGE, "messages": [{"role": "user", "content": f"Q{i}?"}], **params},
    }


def test_an_anthropic_batch_runs_and_its_results_say_what_became_of_each_request(http, server):
    server.set_batch_settings(processing_s=0.3, failure_share=0.3, failure_status=529, seed=3)
    requests = [batch_request(i) for i in range(9)] + [batch_request(9, seed=1)]  # one invalid: errored
    created = http.post("/v1/messages/batches", headers=ANTHROPIC, json={"requests": requests}).json()
    assert created["type"] == "message_batch" and created["processing_status"] == "in_progress"
    assert created["request_counts"]["processing"] == 10 and created["results_url"] is None
    assert http.get(f"/v1/messages/batches/{created['id']}/results", headers=ANTHROPIC).status_code == 404
    url = f"/v1/messages/batches/{created['id']}"
    wait_for(lambda: http.get(url, headers=ANTHROPIC).json()["processing_status"] == "ended", 30, "the batch")
    ended = http.get(url, headers=ANTHROPIC).json()
    counts = ended["request_counts"]
    assert counts["processing"] == 0 and counts["errored"] >= 2 and counts["succeeded"] + counts["errored"] == 10
    assert ended["results_url"] == f"{server.root_url}{url}/results"
    results = [json.loads(line) for line in http.get(ended["results_url"], headers=ANTHROPIC).text.splitlines()]
    by_id = {r["custom_id"]: r["result"] for r in results}
    assert len(by_id) == 10 and by_id["req-9"]["error"]["error"]["type"] == "invalid_request_error"
    kinds = {r["type"] for r in by_id.values()}
    assert kinds == {"succeeded", "errored"}
    assert {r["error"]["error"]["type"] for r in by_id.values() if r["type"] == "errored"} == {
        "overloaded_error",
        "invalid_request_error",
    }
    assert all(r["message"]["type"] == "message" for r in by_id.values() if r["type"] == "succeeded")


def test_anthropic_batches_expire_cancel_and_list(http, server):
    server.set_batch_settings(expire_share=0.5, seed=1)
    expired = http.post(
        "/v1/messages/batches", headers=ANTHROPIC, json={"requests": [batch_request(i) for i in range(6)]}
    )
    server.set_batch_settings(processing_s=60)
    slow = http.post("/v1/messages/batches", headers=ANTHROPIC, json={"requests": [batch_request(i) for i in range(4)]})
    cancelled = http.post(f"/v1/messages/batches/{slow.json()['id']}/cancel", headers=ANTHROPIC).json()
    assert cancelled["cancel_initiated_at"] is not None
    wait_for(
        lambda: all(
            http.get(f"/v1/messages/batches/{b.json()['id']}", headers=ANTHROPIC).json()["processing_status"] == "ended"
            for b in (expired, slow)
        ),
        30,
        "both batches to end",
    )
    kinds = []
    for batch in (expired, slow):
        text = http.get(f"/v1/messages/batches/{batch.json()['id']}/results", headers=ANTHROPIC).text
        kinds.append({json.loads(line)["result"]["type"] for line in text.splitlines()})
    assert kinds[0] == {"succeeded", "expired"} and kinds[1] == {"canceled"}
    page = http.get("/v1/messages/batches", headers=ANTHROPIC, params={"limit": 1}).json()
    assert page["has_more"] and page["data"][0]["id"] == slow.json()["id"] == page["first_id"] == page["last_id"]
    after = http.get("/v1/messages/batches", headers=ANTHROPIC, params={"limit": 1, "after_id": page["last_id"]}).json()
    assert after["data"][0]["id"] == expired.json()["id"] and not after["has_more"]


@pytest.mark.parametrize(
    ("requests", "words"),
    [
        ([], "a non-empty list"),
        ([{"custom_id": "has space", "params": MESSAGE}], "custom_id: 1 to 64 letters"),
        ([{"custom_id": "x" * 65, "params": MESSAGE}], "custom_id: 1 to 64 letters"),
        ([{"custom_id": "a", "params": MESSAGE}, {"custom_id": "a", "params": MESSAGE}], "used more than once"),
        ([{"custom_id": "a"}], "params: an object is required"),
    ],
)
def test_anthropic_refuses_a_malformed_batch(http, requests, words):
    reply = http.post("/v1/messages/batches", headers=ANTHROPIC, json={"requests": requests})
    assert reply.status_code == 400 and words in reply.json()["error"]["message"]


def test_anthropic_refuses_a_batch_over_its_request_limit(http, server):
    server.set_batch_settings(max_requests=3)
    reply = http.post(
        "/v1/messages/batches", headers=ANTHROPIC, json={"requests": [batch_request(i) for i in range(4)]}
    )
    assert reply.status_code == 400 and "at most 3 requests" in reply.json()["error"]["message"]
