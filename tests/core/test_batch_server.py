"""The test server's Files and Batch APIs, spoken to over real sockets with httpx (not dd's client)."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from dd_core.testing.llm_server import OpenAIServer


def chat(content: str, **extra) -> dict:
    return {"model": "test-model", "messages": [{"role": "user", "content": content}], **extra}


def jsonl(requests: list[tuple[str, dict]]) -> bytes:
    return b"".join(
        json.dumps({"custom_id": cid, "method": "POST", "url": "/v1/chat/completions", "body": body}).encode() + b"\n"
        for cid, body in requests
    )


@pytest.fixture(scope="module")
def server():
    with OpenAIServer(api_key="sk-test-batch") as running:
        yield running


@pytest.fixture(autouse=True)
def fresh(server):
    server.reset_for_next_test()


@pytest.fixture
def http(server):
    headers = {"Authorization": "Bearer sk-test-batch"}
    with httpx.Client(base_url=server.base_url, headers=headers, trust_env=False, timeout=30) as client:
        yield client


def upload(http: httpx.Client, content: bytes, purpose: str = "batch") -> httpx.Response:
    return http.post("/files", files={"file": ("in.jsonl", content, "application/jsonl")}, data={"purpose": purpose})


def create(http: httpx.Client, file_id: str, **extra) -> httpx.Response:
    body = {"input_file_id": file_id, "endpoint": "/v1/chat/completions", "completion_window": "24h", **extra}
    return http.post("/batches", json=body)


def wait_terminal(http: httpx.Client, batch_id: str, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        batch = http.get(f"/batches/{batch_id}").json()
        if batch["status"] in ("completed", "failed", "expired", "cancelled"):
            return batch
        time.sleep(0.02)
    raise AssertionError(f"batch {batch_id} did not end: {batch}")


def lines(http: httpx.Client, file_id: str | None) -> dict[str, dict]:
    if file_id is None:
        return {}
    response = http.get(f"/files/{file_id}/content")
    assert response.status_code == 200
    return {line["custom_id"]: line for line in map(json.loads, response.text.splitlines())}


def test_a_batch_answers_each_line_as_the_online_endpoint_does(server, http):
    requests = [(f"r{i}", chat(f"Question {i} about tea?", seed=i, max_tokens=20)) for i in range(25)]
    file = upload(http, jsonl(requests)).json()
    assert file["object"] == "file" and file["purpose"] == "batch" and file["bytes"] > 0
    batch = create(http, file["id"], metadata={"dd_row_group": "7"}).json()
    assert (
        batch["object"] == "batch"
        and batch["input_file_id"] == file["id"]
        and batch["metadata"] == {"dd_row_group": "7"}
    )
    done = wait_terminal(http, batch["id"])
    assert done["status"] == "completed" and done["error_file_id"] is None
    assert done["request_counts"] == {"total": 25, "completed": 25, "failed": 0}
    out = lines(http, done["output_file_id"])
    assert set(out) == {cid for cid, _ in requests}
    raw_order = [
        json.loads(line)["custom_id"] for line in http.get(f"/files/{done['output_file_id']}/content").text.splitlines()
    ]
    assert raw_order != [cid for cid, _ in requests], "results come back in another order: clients match custom_id"
    assert server.stats()["requests_total"] == 0, "a batch sends no online request"
    for cid, body in requests:
        online = http.post("/chat/completions", json=body).json()
        batched = out[cid]["response"]
        assert batched["status_code"] == 200
        assert batched["body"]["choices"] == online["choices"] and batched["body"]["usage"] == online["usage"]


def test_batch_goes_through_its_states_with_growing_counts(server, http):
    server.set_batch_settings(validating_s=0.3, processing_s=0.6, finalizing_s=0.3)
    server.stop_batch_clock()  # the batch moves only as the test moves its clock, 0.1 s a poll
    file = upload(http, jsonl([(f"r{i}", chat(f"q{i}")) for i in range(10)])).json()
    batch_id = create(http, file["id"]).json()["id"]
    seen, completed = [], []
    for _ in range(14):
        batch = http.get(f"/batches/{batch_id}").json()
        if not seen or seen[-1] != batch["status"]:
            seen.append(batch["status"])
        if batch["status"] == "in_progress":
            completed.append(batch["request_counts"]["completed"])
        server.advance_batch_clock(0.1)
    assert seen == ["validating", "in_progress", "finalizing", "completed"]
    assert completed == sorted(completed) and completed[0] < completed[-1], completed
    assert batch["in_progress_at"] and batch["finalizing_at"] and batch["completed_at"]
    assert batch["expires_at"] == batch["created_at"] + 24 * 3600
    stats = server.batch_stats()
    assert stats["counts"]["upload"] == 1 and stats["counts"]["create"] == 1
    assert stats["counts"]["poll"] == sum(1 for entry in stats["log"] if entry["op"] == "poll") >= 4


def test_failure_share_puts_error_lines_and_a_retry_succeeds(server, http):
    server.set_batch_settings(failure_share=0.3, failure_status=500, seed=3)
    requests = [(f"r{i}", chat(f"q{i}", seed=i)) for i in range(40)]
    done = wait_terminal(http, create(http, upload(http, jsonl(requests)).json()["id"]).json()["id"])
    assert done["status"] == "completed"
    errors, out = lines(http, done["error_file_id"]), lines(http, done["output_file_id"])
    assert 4 <= len(errors) <= 24 and len(errors) + len(out) == 40
    assert done["request_counts"] == {"total": 40, "completed": len(out), "failed": len(errors)}
    for line in errors.values():
        assert line["error"] is None and line["response"]["status_code"] == 500
        assert "error" in line["response"]["body"]
    # Same settings, only the failed requests again: each body fails at most once.
    again = [(cid, body) for cid, body in requests if cid in errors]
    second = wait_terminal(http, create(http, upload(http, jsonl(again)).json()["id"]).json()["id"])
    assert second["request_counts"]["failed"] == 0 and set(lines(http, second["output_file_id"])) == set(errors)


def test_expired_batch_returns_what_it_ran_and_batch_expired_lines(server, http):
    server.set_batch_settings(expire_share=0.5, seed=1)
    requests = [(f"r{i}", chat(f"q{i}")) for i in range(30)]
    done = wait_terminal(http, create(http, upload(http, jsonl(requests)).json()["id"]).json()["id"])
    assert done["status"] == "expired" and done["expired_at"]
    errors, out = lines(http, done["error_file_id"]), lines(http, done["output_file_id"])
    assert errors and out and set(errors) | set(out) == {cid for cid, _ in requests}
    assert all(line["response"] is None and line["error"]["code"] == "batch_expired" for line in errors.values())


def test_fault_rules_apply_inside_a_batch(server, http):
    server.set_faults(
        [{"kind": "status", "status": 503, "match": "poison"}, {"kind": "invalid_structured", "match": "garble"}]
    )
    requests = [
        ("ok", chat("fine")),
        ("bad", chat("poison pill")),
        ("odd", chat("garble", response_format={"type": "json_object"})),
    ]
    done = wait_terminal(http, create(http, upload(http, jsonl(requests)).json()["id"]).json()["id"])
    errors, out = lines(http, done["error_file_id"]), lines(http, done["output_file_id"])
    assert set(errors) == {"bad"} and errors["bad"]["response"]["status_code"] == 503
    assert out["odd"]["response"]["body"]["choices"][0]["message"]["content"].startswith("Sorry")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"not json\n", "not valid JSON"),
        (b'{"method": "POST", "url": "/v1/chat/completions", "body": {}}\n', "custom_id"),
        (jsonl([("a", chat("x")), ("a", chat("y"))]), "Duplicate custom_id"),
        (b'{"custom_id": "a", "method": "POST", "url": "/v1/embeddings", "body": {}}\n', "'url' must be"),
        (b"\n\n", "no requests"),
    ],
)
def test_invalid_input_files_fail_the_batch_with_errors(http, content, message):
    done = wait_terminal(http, create(http, upload(http, content).json()["id"]).json()["id"])
    assert done["status"] == "failed" and done["output_file_id"] is None
    assert message in done["errors"]["data"][0]["message"]


def test_bad_lines_inside_a_valid_file_get_400_lines(http):
    requests = [("good", chat("hi")), ("empty", {"model": "test-model", "messages": []})]
    done = wait_terminal(http, create(http, upload(http, jsonl(requests)).json()["id"]).json()["id"])
    assert done["status"] == "completed" and done["request_counts"]["failed"] == 1
    assert lines(http, done["error_file_id"])["empty"]["response"]["status_code"] == 400


def test_too_many_requests_fail_the_batch(server, http):
    server.set_batch_settings(max_requests=3)
    done = wait_terminal(
        http, create(http, upload(http, jsonl([(f"r{i}", chat("x")) for i in range(4)])).json()["id"]).json()["id"]
    )
    assert done["status"] == "failed" and "at most 3" in done["errors"]["data"][0]["message"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"input_file_id": "file-nope"}, "No such input file"),
        ({"endpoint": "/v1/embeddings"}, "'endpoint' must be"),
        ({"completion_window": "soon"}, "'completion_window'"),
        ({"metadata": {"k": 1}}, "'metadata'"),
    ],
)
def test_bad_create_requests_get_400(http, change, message):
    file_id = upload(http, jsonl([("a", chat("x"))])).json()["id"]
    response = (
        create(http, file_id, **change) if "input_file_id" not in change else create(http, change["input_file_id"])
    )
    assert response.status_code == 400 and message in response.json()["error"]["message"]


def test_uploads_need_multipart_and_purpose_batch(http):
    assert upload(http, b"{}\n", purpose="fine-tune").status_code == 400
    assert http.post("/files", json={"purpose": "batch"}).status_code == 400
    assert http.get("/files/file-missing/content").status_code == 404
    assert http.get("/batches/batch_missing").status_code == 404


def test_every_batch_route_needs_the_key(server):
    with httpx.Client(base_url=server.base_url, trust_env=False) as anonymous:
        assert anonymous.post("/files", files={"file": ("a", b"{}")}, data={"purpose": "batch"}).status_code == 401
        assert anonymous.post("/batches", json={}).status_code == 401
        assert anonymous.get("/batches").status_code == 401
        assert anonymous.get("/batches/x").status_code == 401
        assert anonymous.get("/files/x/content").status_code == 401


def test_cancel_keeps_what_ran_and_marks_the_rest(server, http):
    server.set_batch_settings(processing_s=30)
    server.stop_batch_clock()
    requests = [(f"r{i}", chat(f"q{i}")) for i in range(20)]
    batch_id = create(http, upload(http, jsonl(requests)).json()["id"]).json()["id"]
    server.advance_batch_clock(3.75)  # an eighth of the processing time: 2.5 requests' worth, 2 ran
    cancelled = http.post(f"/batches/{batch_id}/cancel").json()
    assert cancelled["status"] == "cancelled" and cancelled["cancelled_at"]
    assert cancelled["request_counts"] == {"total": 20, "completed": 2, "failed": 18}
    errors = lines(http, cancelled["error_file_id"])
    assert len(errors) == 18 and len(lines(http, cancelled["output_file_id"])) == 2
    assert all(line["error"]["code"] == "batch_cancelled" for line in errors.values())
    assert http.post(f"/batches/{batch_id}/cancel").status_code == 409


def test_listing_is_newest_first_and_paged(http):
    file_id = upload(http, jsonl([("a", chat("x"))])).json()["id"]
    ids = [create(http, file_id, metadata={"n": str(n)}).json()["id"] for n in range(5)]
    first = http.get("/batches", params={"limit": 2}).json()
    assert [b["id"] for b in first["data"]] == ids[::-1][:2] and first["has_more"]
    rest = http.get("/batches", params={"limit": 10, "after": first["last_id"]}).json()
    assert [b["id"] for b in rest["data"]] == ids[::-1][2:] and not rest["has_more"]
    assert http.get("/batches", params={"limit": 0}).status_code == 400


def test_bad_batch_settings_are_rejected(server):
    for bad in ({"failure_share": 2}, {"processing_s": -1}, {"failure_status": 200}, {"nope": 1}):
        with pytest.raises(ValueError):
            server.set_batch_settings(**bad)
