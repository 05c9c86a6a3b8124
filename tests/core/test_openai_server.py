"""Tests of the local OpenAI-compatible test server, over real sockets with httpx."""

import asyncio
import datetime
import enum
import json
import time
from typing import Literal

import httpx
import jsonschema
import pydantic
import pytest

from dd_core.testing.llm_server import OpenAIServer, OpenAIServerProcess, Serving, main, request_key
from tests.support import wait_for

PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "minLength": 2},
        "age": {"type": "integer", "minimum": 18, "maximum": 99},
        "email": {"type": "string", "format": "email"},
    },
    "required": ["name", "age"],
    "additionalProperties": False,
}
SCHEMA = {
    "type": "object",
    "properties": {
        "title": {"type": "string", "minLength": 30, "maxLength": 40},
        "difficulty": {"enum": ["easy", "medium", "hard"]},
        "score": {"type": "integer", "minimum": 1, "maximum": 5},
        "ratio": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
        "tags": {
            "type": "array",
            "items": {"type": "string", "enum": ["a", "b", "c"]},
            "minItems": 2,
            "maxItems": 3,
            "uniqueItems": True,
        },
        "author": {"$ref": "#/$defs/Person"},
        "reviewer": {"anyOf": [{"$ref": "#/$defs/Person"}, {"type": "null"}]},
        "notes": {"type": ["string", "null"], "maxLength": 5},
        "steps": {"type": "array", "items": {"type": "object", "properties": {"n": {"type": "integer"}}}},
        "done": {"type": "boolean"},
    },
    "required": ["title", "difficulty", "score", "ratio", "tags", "author", "reviewer", "notes", "done"],
    "additionalProperties": False,
    "$defs": {"Person": PERSON},
}


def schema_format(schema: dict) -> dict:
    return {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}}


JSON_SCHEMA_FORMAT = schema_format(SCHEMA)


def chat(content: str = "Write a question about cats.", **extra) -> dict:
    return {"model": "test-model", "messages": [{"role": "user", "content": content}], **extra}


def reply(response: httpx.Response) -> str:
    assert response.status_code == 200, response.text
    return response.json()["choices"][0]["message"]["content"]


@pytest.fixture(scope="module")
def server():
    with OpenAIServer() as running:
        yield running


@pytest.fixture(autouse=True)
def fresh_server(server):
    server.clear_faults()
    server.set_latency(0)
    server.reset_stats()


@pytest.fixture
def client(server):
    with httpx.Client(base_url=server.base_url, trust_env=False, timeout=30) as http:
        yield http


async def until(server, predicate, what: str) -> None:
    """Wait (without blocking the caller's event loop) until ``predicate(server.stats())``."""
    await asyncio.to_thread(wait_for, lambda: predicate(server.stats()), 30, what)


def post(client: httpx.Client, body: dict, **kwargs) -> httpx.Response:
    return client.post("/chat/completions", json=body, **kwargs)


def test_completion_has_openai_shape(client):
    body = chat(temperature=0.7, top_p=0.9, max_tokens=50, seed=1, extra_field={"ignored": True})
    data = post(client, body).json()
    assert data["id"].startswith("chatcmpl-")
    assert data["object"] == "chat.completion"
    assert isinstance(data["created"], int)
    assert data["model"] == "test-model"
    [choice] = data["choices"]
    assert choice["index"] == 0 and choice["finish_reason"] == "stop"
    assert choice["message"]["role"] == "assistant"
    usage = data["usage"]
    assert usage["prompt_tokens"] == 5
    assert usage["completion_tokens"] == len(choice["message"]["content"].split())
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_replies_are_deterministic_per_request(client):
    first = reply(post(client, chat(seed=1)))
    assert reply(post(client, chat(seed=1))) == first
    assert reply(post(client, chat(seed=2))) != first
    assert reply(post(client, chat("Write a question about dogs.", seed=1))) != first


def test_plain_reply_echoes_the_last_user_message(client):
    body = chat("x" * 100)
    body["messages"] = [{"role": "system", "content": "Be brief."}, *body["messages"]]
    content = reply(post(client, body))
    assert content.startswith("Reply ")
    assert content.endswith("to: " + "x" * 60)


def test_models_endpoint_lists_configured_models(client):
    data = client.get("/models").json()
    assert data == {
        "object": "list",
        "data": [{"id": "test-model", "object": "model", "created": 0, "owned_by": "dd-test"}],
    }
    assert reply(post(client, {**chat(), "model": "any-other-model"}))


@pytest.mark.parametrize(
    "content",
    [
        b"{not json",
        json.dumps([1, 2]).encode(),
        json.dumps({"messages": [{"role": "user", "content": "hi"}]}).encode(),
        json.dumps({"model": "test-model"}).encode(),
        json.dumps({"model": "test-model", "messages": ["hi"]}).encode(),
        json.dumps(chat(stream=True)).encode(),
        json.dumps(chat(response_format={"type": "json_schema", "json_schema": {"name": "x"}})).encode(),
        json.dumps(chat(response_format=schema_format({"type": "tuple"}))).encode(),
        json.dumps(chat(response_format=schema_format({"type": "integer", "minimum": 5, "maximum": 1}))).encode(),
    ],
    ids=[
        "bad-json",
        "not-object",
        "no-model",
        "no-messages",
        "bad-message",
        "stream",
        "no-schema",
        "bad-type",
        "empty-range",
    ],
)
def test_invalid_requests_get_openai_400(client, content):
    response = client.post("/chat/completions", content=content, headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["message"]


def test_unknown_route_gets_openai_error(client):
    response = client.get("/nowhere")
    assert response.status_code == 404
    assert response.json()["error"]["message"] == "Not Found"


def test_json_schema_replies_validate(client):
    validator = jsonschema.Draft202012Validator(SCHEMA, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
    contents = [reply(post(client, chat(seed=seed, response_format=JSON_SCHEMA_FORMAT))) for seed in range(25)]
    for content in contents:
        validator.validate(json.loads(content))
    assert len(set(contents)) == len(contents)
    assert reply(post(client, chat(seed=0, response_format=JSON_SCHEMA_FORMAT))) == contents[0]


class Level(enum.Enum):
    LOW = "low"
    HIGH = "high"


class Step(pydantic.BaseModel):
    order: int = pydantic.Field(ge=1, le=10)
    text: str = pydantic.Field(min_length=3, max_length=20)


class Recipe(pydantic.BaseModel):
    name: str
    level: Level
    kind: Literal["soup", "salad"]
    created: datetime.datetime
    rating: float | None = pydantic.Field(default=None, gt=0, lt=5)
    steps: list[Step] = pydantic.Field(min_length=1, max_length=4)
    tags: dict[str, int]


def test_pydantic_schema_replies_validate(client):
    response_format = schema_format(Recipe.model_json_schema())
    for seed in range(10):
        Recipe.model_validate_json(reply(post(client, chat(seed=seed, response_format=response_format))))


def test_json_object_reply_is_an_object(client):
    document = json.loads(reply(post(client, chat(response_format={"type": "json_object"}))))
    assert isinstance(document["answer"], str)


@pytest.mark.parametrize(("language", "code_start"), [("python", "def f_"), ("sql", "SELECT "), ("rust", "# rust")])
def test_fenced_code_reply(client, language, code_start):
    lines = reply(post(client, chat(f"Write code.\n```{language}\n# your code\n```"))).splitlines()
    opener = lines.index(f"```{language}")
    closer = lines.index("```")
    assert opener == 1 and closer > opener + 1
    assert lines[opener + 1].startswith(code_start)
    assert lines[0] and lines[-1] and "```" not in lines[0] + lines[-1]


def test_concurrent_requests_overlap(server):
    """Requests are served side by side, not one after another: 16 are held in flight together
    until the test releases them, and each still waits out its latency."""
    server.set_latency(200)
    server.set_faults([{"kind": "hold", "name": "burst"}])

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=server.base_url, trust_env=False, timeout=30) as http:
            sent = [asyncio.ensure_future(http.post("/chat/completions", json=chat(seed=i))) for i in range(16)]
            await until(server, lambda stats: stats["held"].get("burst") == 16, "16 requests held at once")
            assert not any(request.done() for request in sent)
            await asyncio.to_thread(server.release, "burst")
            return await asyncio.gather(*sent)

    responses = asyncio.run(burst())
    assert all(response.status_code == 200 for response in responses)
    stats = server.stats()
    assert stats["max_in_flight"] == 16 and stats["held"] == {}
    assert all(entry["t_end"] - entry["t_start"] >= 0.2 for entry in stats["request_log"])


def test_latency_can_change_at_runtime(server, client):
    server.set_latency(150, jitter_ms=50)
    started = time.monotonic()
    reply(post(client, chat()))
    assert time.monotonic() - started >= 0.15
    server.set_latency(3_600_000)  # an hour: the client gives up
    with pytest.raises(httpx.ReadTimeout):
        post(client, chat(), timeout=0.5)
    server.set_latency(0)
    reply(post(client, chat()))  # answered within the client's timeout: no longer an hour


def test_jitter_stays_within_its_bound_and_repeats_per_request():
    serving = Serving(latency_ms=150, jitter_ms=50)
    keys = [request_key(chat(seed=i)) for i in range(200)]
    latencies = [serving.latency_s(key) for key in keys]
    assert all(0.15 <= latency <= 0.2 for latency in latencies) and len(set(latencies)) > 100
    assert latencies == [serving.latency_s(key) for key in keys]


def test_status_fault_429_with_retry_after(server, client):
    server.set_faults([{"kind": "status", "status": 429, "retry_after": 2}])
    response = post(client, chat())
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "2"
    assert response.json()["error"]["code"] == "rate_limit_exceeded"


def test_status_fault_503(server, client):
    server.set_faults([{"kind": "status", "status": 503}])
    response = post(client, chat())
    assert response.status_code == 503
    assert "Retry-After" not in response.headers
    assert response.json()["error"]["type"] == "server_error"


def test_hang_times_out_the_client_without_blocking_others(server):
    server.set_faults([{"kind": "hang", "match": "HANG"}])

    async def hang_and_normal() -> BaseException | httpx.Response:
        async with httpx.AsyncClient(base_url=server.base_url, trust_env=False, timeout=30) as http:
            hung = asyncio.ensure_future(http.post("/chat/completions", json=chat("HANG")))
            await until(server, lambda stats: stats["in_flight"] == 1, "the hanging request")
            assert (await http.post("/chat/completions", json=chat())).status_code == 200
            assert not hung.done(), "the other request was answered while this one hangs"
            hung.cancel()
            return (
                await asyncio.gather(
                    http.post("/chat/completions", json=chat("HANG"), timeout=0.5), return_exceptions=True
                )
            )[0]

    assert isinstance(asyncio.run(hang_and_normal()), httpx.ReadTimeout)
    # The server cancels a hung handler once its client has gone.
    wait_for(lambda: server.stats()["in_flight"] == 0, 30, "the hung handlers to be cancelled")
    stats = server.stats()
    assert stats["faults_injected"]["hang"] == 2
    assert [entry["status"] for entry in stats["request_log"] if entry["fault"] == "hang"] == [None, None]


def test_hold_keeps_requests_until_the_test_releases_them(server, client):
    server.set_faults(
        [{"kind": "hold", "name": "first", "match": "FIRST"}, {"kind": "hold", "name": "second", "match": "SECOND"}]
    )

    async def held() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=server.base_url, trust_env=False, timeout=30) as http:
            first = [asyncio.ensure_future(http.post("/chat/completions", json=chat(f"FIRST {i}"))) for i in range(2)]
            second = asyncio.ensure_future(http.post("/chat/completions", json=chat("SECOND")))
            await until(server, lambda stats: stats["held"] == {"first": 2, "second": 1}, "three held requests")
            assert (await http.post("/chat/completions", json=chat("other"))).status_code == 200
            await asyncio.to_thread(server.release, "first")
            answered = await asyncio.gather(*first)
            assert not second.done() and server.stats()["held"] == {"second": 1}
            # A released hold lets later requests through; clearing the rules releases the rest.
            assert (await http.post("/chat/completions", json=chat("FIRST again"))).status_code == 200
            await asyncio.to_thread(server.clear_faults)
            return [*answered, await second]

    answers = asyncio.run(held())
    assert [reply(answer) for answer in answers] == [
        reply(post(client, body)) for body in (chat("FIRST 0"), chat("FIRST 1"), chat("SECOND"))
    ]
    stats = server.stats()
    assert stats["held"] == {} and stats["faults_injected"]["hold"] == 4
    assert [entry["fault"] for entry in stats["request_log"]].count("hold") == 4
    with pytest.raises(ValueError, match="No hold rule is named 'nope'"):
        server.release("nope")


def test_short_hang_then_answers(server, client):
    server.set_faults([{"kind": "hang", "hang_s": 0.2}])
    started = time.monotonic()
    assert reply(post(client, chat()))
    assert time.monotonic() - started >= 0.2
    assert server.stats()["succeeded"] == 1


def test_malformed_json_fault(server, client):
    server.set_faults([{"kind": "malformed_json"}])
    response = post(client, chat())
    assert response.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        response.json()
    assert server.stats()["succeeded"] == 0


def test_invalid_structured_fault(server, client):
    server.set_faults([{"kind": "invalid_structured"}])
    content = reply(post(client, chat(response_format=JSON_SCHEMA_FORMAT)))
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(json.loads(content), SCHEMA)
    with pytest.raises(json.JSONDecodeError):
        json.loads(reply(post(client, chat(response_format={"type": "json_object"}))))
    stats = server.stats()
    assert stats["succeeded"] == 0 and stats["faults_injected"]["invalid_structured"] == 2


def test_disconnect_fault(server, client):
    server.set_faults([{"kind": "disconnect", "times": 1}])
    with pytest.raises(httpx.RemoteProtocolError):
        post(client, chat())
    assert reply(post(client, chat()))
    stats = server.stats()
    assert stats["faults_injected"]["disconnect"] == 1
    assert stats["by_status"] == {"200": 1}


def statuses(client: httpx.Client, bodies: list[dict]) -> list[int]:
    return [post(client, body).status_code for body in bodies]


def test_fault_times_and_match(server, client):
    server.set_faults([{"kind": "status", "status": 500, "match": "FAIL", "times": 2}])
    assert statuses(client, [chat("please FAIL"), chat("ok"), chat("FAIL"), chat("FAIL")]) == [500, 200, 500, 200]


def test_fault_every_nth_matching_request(server, client):
    server.set_faults([{"kind": "status", "status": 503, "every": 3}])
    assert statuses(client, [chat(seed=i) for i in range(6)]) == [200, 200, 503, 200, 200, 503]


def test_fault_model_filter_and_first_rule_wins(server, client):
    server.set_faults(
        [
            {"kind": "status", "status": 429, "model": "other"},
            {"kind": "status", "status": 500, "match": "x", "times": 1},
            {"kind": "status", "status": 503, "match": "x"},
        ]
    )
    other = {**chat(), "model": "other"}
    assert statuses(client, [other, chat(), chat("x"), chat("x")]) == [429, 200, 500, 503]


def test_fault_probability_is_reproducible(server, client):
    rules = [{"kind": "status", "status": 500, "probability": 0.5, "seed": 7}]
    bodies = [chat(seed=i) for i in range(20)]
    server.set_faults(rules)
    first = statuses(client, bodies)
    server.set_faults(rules)
    assert statuses(client, bodies) == first
    assert {200, 500} == set(first)


@pytest.mark.parametrize(
    "rule",
    [
        {"kind": "explode"},
        {"kind": "status", "bogus": 1},
        {"kind": "status", "status": 200},
        {"kind": "hang", "every": 0},
        {"kind": "hold", "name": ""},
    ],
)
def test_invalid_fault_rules_are_rejected(server, rule):
    with pytest.raises(ValueError):
        server.set_faults([rule])


def test_invalid_latency_is_rejected(server):
    with pytest.raises(ValueError):
        server.set_latency(-1)


def test_stats_count_requests_and_successes(server, client):
    first, second = chat("first"), chat("second")
    for body in (first, first, second):
        reply(post(client, body))
    server.set_faults([{"kind": "status", "status": 429, "match": "third"}])
    post(client, chat("third"))

    stats = server.stats()
    assert stats["requests_total"] == 4
    assert stats["by_status"] == {"200": 3, "429": 1}
    assert stats["succeeded"] == 3
    assert stats["success_keys"] == {request_key(first): 2, request_key(second): 1}
    assert stats["faults_injected"]["status"] == 1
    assert stats["max_in_flight"] == 1
    assert stats["auth_header_requests"] == 0
    log = stats["request_log"]
    assert [entry["status"] for entry in log] == [200, 200, 200, 429]
    assert log[0]["key"] == request_key(first) and log[0]["model"] == "test-model"
    assert all(entry["t_start"] <= entry["t_end"] <= time.monotonic() for entry in log)

    server.reset_stats()
    stats = server.stats()
    assert stats["requests_total"] == 0 and stats["success_keys"] == {} and stats["request_log"] == []
    assert post(client, chat("third")).status_code == 429  # rules survive a stats reset


def test_api_key_is_required_when_configured():
    with OpenAIServer(api_key="sk-test") as server, httpx.Client(base_url=server.base_url, trust_env=False) as http:
        assert http.post("/chat/completions", json=chat()).status_code == 401
        wrong = http.post("/chat/completions", json=chat(), headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "invalid_api_key"
        right = http.post("/chat/completions", json=chat(), headers={"Authorization": "Bearer sk-test"})
        assert right.status_code == 200
        assert http.get("/models").status_code == 401
        assert server.stats()["auth_header_requests"] == 2


def test_server_process_start_and_stop():
    server = OpenAIServerProcess(latency_ms=20, models=("model-a", "model-b"), api_key="sk-proc")
    with server, httpx.Client(base_url=server.base_url, trust_env=False) as http:
        headers = {"Authorization": "Bearer sk-proc"}
        models = http.get("/models", headers=headers).json()["data"]
        assert [model["id"] for model in models] == ["model-a", "model-b"]
        started = time.monotonic()
        assert http.post("/chat/completions", json=chat(), headers=headers).status_code == 200
        assert time.monotonic() - started >= 0.02
        server.set_faults([{"kind": "status", "status": 429, "times": 1}])
        assert http.post("/chat/completions", json=chat(), headers=headers).status_code == 429
        assert server.stats()["by_status"] == {"200": 1, "429": 1}
    assert server.process.returncode == 0  # exited cleanly on SIGTERM
    with pytest.raises(httpx.ConnectError):
        httpx.get(server.base_url + "/models", trust_env=False)


def test_command_line_binds_to_loopback_only():
    with pytest.raises(SystemExit):
        main(["--host", "0.0.0.0"])


# --- latency models, bounded batch, metrics ------------------------------------------


def test_lognormal_latency_has_the_asked_median_and_sigma_and_repeats_per_request():
    import math
    import statistics

    from dd_core.testing.llm_server import Serving

    serving = Serving(latency_ms=400, latency_sigma=1.0, latency_seed=3)
    keys = [request_key({"model": "m", "messages": [{"role": "user", "content": str(i)}]}) for i in range(4000)]
    logs = [math.log(serving.latency_s(k)) for k in keys]
    assert abs(math.exp(statistics.median(logs)) - 0.4) < 0.02
    assert abs(statistics.stdev(logs) - 1.0) < 0.05
    assert max(serving.latency_s(k) for k in keys) > 4  # a long tail
    assert [serving.latency_s(k) for k in keys[:50]] == [serving.latency_s(k) for k in keys[:50]]
    other_seed = Serving(latency_ms=400, latency_sigma=1.0, latency_seed=4)
    assert [other_seed.latency_s(k) for k in keys[:50]] != [serving.latency_s(k) for k in keys[:50]]
    with pytest.raises(ValueError):
        Serving(latency_ms=float("nan"))


def test_bounded_batch_serves_n_at_once_queues_the_rest_and_reports_it_at_metrics():
    async def burst(server: OpenAIServer) -> tuple[list[float], list[str]]:
        async with httpx.AsyncClient(timeout=30, trust_env=False) as client:
            body = {"model": "test-model", "messages": [{"role": "user", "content": "hi"}]}
            started = time.monotonic()

            async def one(i: int) -> float:
                await client.post(f"{server.base_url}/chat/completions", json={**body, "seed": i})
                return time.monotonic() - started

            tasks = [asyncio.ensure_future(one(i)) for i in range(6)]
            # The first two hold their slots until released: the other four must queue.
            queued = 'vllm:num_requests_waiting{model_name="test-model"} 4.0'
            await asyncio.to_thread(
                wait_for, lambda: queued in httpx.get(server.metrics_url, trust_env=False).text, 30, "4 queued requests"
            )
            seen = (await client.get(server.metrics_url)).text
            await asyncio.to_thread(server.release, "first")
            return await asyncio.gather(*tasks), seen

    with OpenAIServer(latency_ms=300, slots=2) as server:
        server.set_faults([{"kind": "hold", "name": "first", "times": 2}])
        done, metrics = asyncio.run(burst(server))
        stats = server.stats()
    assert 'vllm:num_requests_running{model_name="test-model"} 2.0' in metrics
    assert 'vllm:num_requests_waiting{model_name="test-model"} 4.0' in metrics
    assert "# TYPE vllm:num_requests_waiting gauge" in metrics
    # Three waves of two: a request's latency is its wait plus its service time.
    waves = sorted(done)
    assert waves[2] >= 0.6 and waves[4] >= 0.9  # (lower bounds only: a busy machine may be slower)
    assert stats["max_waiting"] == 4 and stats["max_in_flight"] == 6
    assert 0 < stats["mean_waiting"] < 4


def test_metrics_can_be_left_out():
    with OpenAIServer(metrics=False) as server:
        assert httpx.get(server.metrics_url, trust_env=False).status_code == 404
    with OpenAIServer() as server:  # without slots: everything in flight is running
        text = httpx.get(server.metrics_url, trust_env=False).text
        assert 'vllm:num_requests_waiting{model_name="test-model"} 0.0' in text
