"""dd's Batch API client against the real local server: round trip, transient trouble, lost
replies, refusals, and replies of the wrong shape."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import httpx
import pytest

from dd_core.config.models import ModelConfig
from dd_core.engine.llm.batch_client import BatchClient, _line_result, _status, bearer, request_line
from dd_core.engine.llm.client import CallFailed
from dd_core.engine.llm.timeouts import Timeouts
from dd_core.engine.llm.wire import serialise
from dd_core.testing.llm_server import OpenAIServer
from tests.support import batch_clock_moved_by_polls

KEY = "sk-batch-client-secret"


@pytest.fixture(scope="module")
def server():
    with OpenAIServer(api_key=KEY) as running:
        yield running


@pytest.fixture(autouse=True)
def fresh(server):
    server.reset_for_next_test()


def body(i: int) -> dict:
    return {"model": "test-model", "messages": [{"role": "user", "content": f"Question {i}?"}], "seed": i}


def with_client(server, action, *, key: str = KEY, max_retries: int = 3):
    async def main():
        async with aiohttp.ClientSession() as session:
            client = BatchClient(
                session,
                server.base_url,
                bearer(key),
                timeouts=Timeouts(30, 30, 30),
                model=ModelConfig(alias="w", model="test-model", max_retries=max_retries),
            )
            return await action(client)

    return asyncio.run(main())


async def round_trip(client: BatchClient, bodies: dict[str, dict]) -> dict:
    file_id = await client.upload(request_line(cid, serialise(b)) for cid, b in bodies.items())
    created = await client.create(file_id, completion_window="24h", metadata={"dd_row_group": "0"})
    seen = []
    done = await client.wait(created.id, 0.02, seen.append)
    results = {line.custom_id: line async for line in client.results(done)}
    return {"created": created, "done": done, "seen": seen, "results": results}


def test_round_trip_gives_the_online_replies(server):
    bodies = {f"k{i}": body(i) for i in range(12)}
    out = with_client(server, lambda c: round_trip(c, bodies))
    assert out["done"].status == "completed" and out["done"].completed == 12 and out["done"].terminal
    assert out["seen"][-1] == out["done"]
    with httpx.Client(base_url=server.base_url, headers={"Authorization": f"Bearer {KEY}"}, trust_env=False) as http:
        for cid, b in bodies.items():
            online = http.post("/chat/completions", json=b).json()
            result = out["results"][cid]
            assert result.failure is None
            assert result.completion.content == online["choices"][0]["message"]["content"]
            assert result.completion.prompt_tokens == online["usage"]["prompt_tokens"]
            assert result.completion.completion_tokens == online["usage"]["completion_tokens"]


def test_progress_is_reported_while_in_progress(server):
    server.set_batch_settings(processing_s=0.5)
    with batch_clock_moved_by_polls(server, 0.1):  # the client sees the batch in progress, however slow
        out = with_client(server, lambda c: round_trip(c, {f"k{i}": body(i) for i in range(50)}))
    states = [(s.status, s.completed) for s in out["seen"]]
    assert ("in_progress", 0) in states or any(st == "in_progress" for st, _ in states)
    assert any(st == "in_progress" and 0 < n < 50 for st, n in states), states
    assert states[-1] == ("completed", 50)


def test_failed_and_expired_lines_are_typed_failures(server):
    server.set_batch_settings(failure_share=0.5, failure_status=500, expire_share=0.2, seed=5)
    out = with_client(server, lambda c: round_trip(c, {f"k{i}": body(i) for i in range(40)}))
    failures = [r.failure for r in out["results"].values() if r.failure]
    assert out["done"].status == "expired" and len(out["results"]) == 40
    codes = {f.code for f in failures}
    assert codes == {"500", "batch_expired"}
    assert all(f.retryable for f in failures), "a later batch may succeed on both"


def test_transient_errors_are_retried(server):
    server.set_batch_settings(fail_calls=2, fail_status=502)
    out = with_client(server, lambda c: round_trip(c, {"a": body(1)}))
    assert out["done"].status == "completed"
    assert server.batch_stats()["counts"]["failed_call"] == 2


def test_a_lost_create_reply_never_makes_a_second_batch(server):
    server.set_batch_settings(lose_create_replies=1)
    out = with_client(server, lambda c: round_trip(c, {"a": body(1), "b": body(2)}))
    stats = server.batch_stats()
    assert stats["counts"]["create"] == 1 and stats["counts"]["list"] >= 1
    assert out["created"].id == stats["batches"][0]["id"] and out["done"].status == "completed"


def test_find_pages_through_the_account(server):
    async def action(client: BatchClient):
        first = await client.upload([request_line("a", serialise(body(0)))])
        target = await client.create(first, completion_window="24h", metadata={})
        other = await client.upload([request_line("a", serialise(body(1)))])
        for _ in range(120):  # push the target past the first page of 100
            await client.create(other, completion_window="24h", metadata={})
        return target, await client.find(first), await client.find("file-unknown")

    target, found, missing = with_client(server, action)
    assert found is not None and found.id == target.id and missing is None


def test_a_wrong_key_is_refused_at_once_and_never_printed(server):
    async def action(client: BatchClient):
        with pytest.raises(CallFailed) as caught:
            await client.upload([request_line("a", serialise(body(0)))])
        return caught.value

    failure = with_client(server, action, key="sk-wrong-secret")
    assert failure.status == 401 and not failure.retryable
    assert "sk-wrong-secret" not in str(failure) and KEY not in str(failure)
    assert server.batch_stats()["counts"]["upload"] == 0


def test_a_refused_input_file_is_reported_with_the_providers_reasons(server):
    async def action(client: BatchClient):
        file_id = await client.upload(
            [b'{"custom_id": "x", "method": "GET", "url": "/v1/chat/completions", "body": {}}\n']
        )
        created = await client.create(file_id, completion_window="24h", metadata={})
        return await client.wait(created.id, 0.01)

    done = with_client(server, action)
    assert done.status == "failed" and "'method' must be 'POST'" in done.errors[0] and "(line 1)" in done.errors[0]


def test_unknown_batch_is_a_typed_error(server):
    async def action(client: BatchClient):
        with pytest.raises(CallFailed) as caught:
            await client.retrieve("batch_nope")
        return caught.value

    failure = with_client(server, action)
    assert failure.status == 404 and not failure.retryable


@pytest.mark.parametrize(
    "reply",
    [None, [], "text", {"status": "completed"}, {"id": "b", "status": 7}, {"id": ""}],
)
def test_batch_objects_of_the_wrong_shape_are_typed_errors(reply):
    with pytest.raises(CallFailed) as caught:
        _status(reply)
    assert caught.value.code == "malformed"


def test_batch_objects_with_odd_fields_are_read_safely():
    status = _status(
        {
            "id": "b",
            "status": "in_progress",
            "request_counts": {"total": -3, "completed": 1e400, "failed": True},
            "errors": "x",
            "metadata": [1],
        }
    )
    assert (status.total, status.completed, status.failed, status.errors, status.metadata) == (0, 0, 0, (), {})


@pytest.mark.parametrize(
    ("line", "code", "retryable"),
    [
        (b"not json", "malformed", True),
        (b'{"custom_id": 5}', "malformed", True),
        (
            b'{"custom_id": "a", "response": {"status_code": 200, "body": {"choices": []}}, "error": null}',
            "malformed",
            True,
        ),
        (
            b'{"custom_id": "a", "response": {"status_code": 429, "body": {"error": {"message": "slow"}}}, "error": null}',
            "429",
            True,
        ),
        (b'{"custom_id": "a", "response": {"status_code": 400, "body": "nope"}, "error": null}', "400", False),
        (
            b'{"custom_id": "a", "response": null, "error": {"code": "batch_expired", "message": "late"}}',
            "batch_expired",
            True,
        ),
        (
            b'{"custom_id": "a", "response": null, "error": {"code": "batch_cancelled", "message": "stop"}}',
            "batch_cancelled",
            True,
        ),
        (
            b'{"custom_id": "a", "response": null, "error": {"code": "server_error", "message": "x"}}',
            "server_error",
            True,
        ),
        (b'{"custom_id": "a", "response": null, "error": {"type": "overloaded_error"}}', "overloaded_error", True),
        (
            b'{"custom_id": "a", "response": null, "error": {"code": "rate_limit_exceeded"}}',
            "rate_limit_exceeded",
            True,
        ),
        (b'{"custom_id": "a", "response": null, "error": {"code": "timeout"}}', "timeout", True),
        (b'{"custom_id": "a", "response": null, "error": {"code": "invalid_request"}}', "invalid_request", False),
        (
            b'{"custom_id": "a", "response": null, "error": {"code": "content_policy_violation"}}',
            "content_policy_violation",
            False,
        ),
        (b'{"custom_id": "a", "response": null, "error": {"code": "something_new"}}', "something_new", False),
        (b'{"custom_id": "a", "response": null, "error": null}', "unknown", False),
    ],
)
def test_result_lines_of_every_shape_become_outcomes(line, code, retryable):
    result = _line_result(line)
    assert result.completion is None and result.failure.code == code and result.failure.retryable is retryable


@pytest.mark.parametrize(
    "line",
    [
        b'{"custom_id": "a", "response": null, "error": {"code": "batch_cancelled", "message": "stop"}}',
        b'{"custom_id": "a", "response": null, "error": {"code": "server_error", "message": "x"}}',
        b'{"custom_id": "a", "response": {"status_code": 503, "body": {"error": {"message": "busy"}}}, "error": null}',
    ],
)
def test_nothing_in_a_batch_someone_cancelled_is_retried(line):
    """dd never cancels a batch: a cancelled batch is the user's decision."""
    assert _line_result(line, batch_cancelled=True).failure.retryable is False


def test_request_lines_are_what_the_batch_api_expects():
    payload = serialise(body(3))
    line = json.loads(request_line("k3", payload))
    assert line == {"custom_id": "k3", "method": "POST", "url": "/v1/chat/completions", "body": body(3)}
