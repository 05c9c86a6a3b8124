"""LLM columns against a real local OpenAI-compatible server, through the production client."""

from __future__ import annotations

import json
import logging

import jsonschema
import pytest

from dd_core import GenerationError, fingerprint, generate, load_config, load_dataset
from dd_core.engine.in_process import run_row_group
from dd_core.engine.llm.cells import judge_schema
from dd_core.storage.metadata import load_metadata
from dd_core.testing.llm_server import OpenAIServer
from tests.support import released_when, run_dd

PROFILE = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "age": {"type": "integer", "minimum": 18, "maximum": 90},
        "skills": {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 3},
        "level": {"enum": ["junior", "senior"]},
    },
    "required": ["name", "age", "skills", "level"],
    "additionalProperties": False,
}


@pytest.fixture
def server():
    with OpenAIServer(latency_ms=5) as srv:
        yield srv


def chain_config(url: str, **model) -> dict:
    return {
        "name": "chain",
        "models": [
            {
                "alias": "writer",
                "model": "test-model",
                "base_url": url,
                "max_parallel_requests": 8,
                "max_retries": 6,
                **model,
            }
        ],
        "columns": [
            {"name": "topic", "type": "category", "values": ["cats", "ships", "tea"]},
            {
                "name": "question",
                "type": "llm_text",
                "model": "writer",
                "prompt": "Write a question about {{ topic }}.",
                "system_prompt": "You are curious.",
            },
            {"name": "answer", "type": "llm_text", "model": "writer", "prompt": "Answer this question: {{ question }}"},
            {"name": "answer_length", "type": "expression", "expr": "{{ answer | length }}", "dtype": "int"},
        ],
    }


def all_types_config(base_url: str) -> dict:
    config = chain_config(base_url)
    config["columns"] += [
        {
            "name": "profile",
            "type": "llm_structured",
            "model": "writer",
            "prompt": "A profile of someone who likes {{ topic }}.",
            "output_schema": PROFILE,
        },
        {
            "name": "verdict",
            "type": "llm_judge",
            "model": "writer",
            "prompt": "Judge this answer: {{ answer }}",
            "scores": [
                {"name": "accuracy", "description": "Is it right?", "options": {1: "wrong", 2: "partly", 3: "right"}},
                {"name": "tone", "options": ["formal", "casual"]},
            ],
        },
        {
            "name": "snippet",
            "type": "llm_code",
            "model": "writer",
            "prompt": "Code that prints {{ topic }}.",
            "language": "python",
        },
    ]
    return config


def test_every_llm_column_type(server):
    table = run_row_group(all_types_config(server.base_url), 0, 30).table
    rows = table.to_pylist()
    assert len(rows) == 30
    for row in rows:
        assert row["question"].endswith(f"Write a question about {row['topic']}.")
        assert row["question"] in row["answer"] or "Answer this question" in row["answer"]
        assert row["answer_length"] == len(row["answer"])
        jsonschema.validate(row["profile"], PROFILE)
        assert row["verdict"]["accuracy"]["score"] in (1, 2, 3) and row["verdict"]["tone"]["score"] in (
            "formal",
            "casual",
        )
        assert isinstance(row["verdict"]["tone"]["reason"], str)
        assert row["snippet"].startswith("def ") and "```" not in row["snippet"]
    assert (
        str(table.schema.field("profile").type)
        == "struct<name: string, age: int64, skills: list<item: string>, level: string>"
    )
    jsonschema.Draft202012Validator.check_schema(
        judge_schema(load_config(all_types_config(server.base_url)).columns[5])
    )


def test_replies_are_reproducible_and_each_cell_has_its_own_seed(server):
    config = chain_config(server.base_url)
    first = run_row_group(config, 0, 40).table
    again = run_row_group(config, 0, 40).table
    assert first.equals(again)
    by_topic = {}
    for row in first.to_pylist():
        by_topic.setdefault(row["topic"], set()).add(row["question"])
    assert all(len(questions) > 1 for questions in by_topic.values())  # same prompt, different seeds
    assert run_row_group(config, 1, 40).table.column("question") != first.column("question")


def test_cells_start_as_soon_as_their_row_is_ready(server):
    """Answers of finished rows go out while questions of other rows are still pending."""
    config = chain_config(server.base_url)
    config["models"].append(
        {"alias": "answerer", "model": "answer-model", "base_url": server.base_url, "max_parallel_requests": 8}
    )
    config["columns"][2]["model"] = "answerer"
    server.reset_stats()
    run_row_group(config, 0, 200)
    log = server.stats()["request_log"]
    questions = sorted(e["t_start"] for e in log if e["model"] == "test-model")
    answers = sorted(e["t_start"] for e in log if e["model"] == "answer-model")
    assert len(questions) == len(answers) == 200
    assert answers[0] < questions[20]  # no barrier between the two columns
    assert answers[100] < questions[-1]


def test_columns_of_one_model_share_its_concurrency_limit(server):
    config = chain_config(server.base_url, max_parallel_requests=3)
    server.set_latency(30)
    server.reset_stats()
    # Requests are held until the limit is in flight at once (it is reached), then all go on.
    server.set_faults([{"kind": "hold", "name": "fill"}])
    with released_when(server, "fill", lambda stats: stats["held"].get("fill") == 3, "3 requests in flight"):
        run_row_group(config, 0, 60)
    assert server.stats()["max_in_flight"] == 3


def test_structured_replies_are_validated_and_re_asked(server):
    server.set_faults([{"kind": "invalid_structured", "match": "A profile", "times": 5}])
    result = run_row_group(all_types_config(server.base_url), 0, 20)
    assert result.table.num_rows == 20
    usage = result.usage["writer"]
    assert usage.invalid_replies == 5 and usage.failed_cells == 0
    for row in result.table.to_pylist():
        jsonschema.validate(row["profile"], PROFILE)


def test_a_cell_that_stays_invalid_drops_only_its_row(server):
    config = all_types_config(server.base_url)
    config["max_failed_row_share"] = 0.5
    config["columns"][4]["max_invalid_retries"] = 1
    config["columns"][0] = {"name": "topic", "type": "category", "values": ["cats", "ships"], "weights": [0.9, 0.1]}
    server.set_faults([{"kind": "invalid_structured", "match": "likes ships"}])
    result = run_row_group(config, 0, 30)
    topics = (
        run_row_group({**config, "columns": config["columns"][:1], "models": []}, 0, 30)
        .table.column("topic")
        .to_pylist()
    )
    assert result.dropped_rows == topics.count("ships") > 0
    assert set(result.table.column("topic").to_pylist()) == {"cats"}
    assert result.usage["writer"].failed_cells == topics.count("ships")


@pytest.mark.parametrize(
    ("rule", "code"),
    [
        ({"kind": "status", "status": 500, "times": 12}, "500"),
        ({"kind": "status", "status": 503, "retry_after": 0.05, "times": 12}, "503"),
        ({"kind": "malformed_json", "times": 6}, "malformed"),
        ({"kind": "disconnect", "times": 6}, "network"),
        ({"kind": "hang", "times": 4}, "timeout"),
    ],
    ids=["500", "503-retry-after", "malformed-json", "disconnect", "timeout"],
)
def test_transient_faults_are_retried_and_counted(tmp_path, server, rule, code):
    server.set_faults([rule])
    # A hang lasts an hour; every other request must beat the timeout however busy the machine.
    config = chain_config(server.base_url, timeout_s=5.0 if code == "timeout" else 60.0)
    result = generate(config, 60, buffer_size=30, artifact_path=tmp_path)
    assert result.num_records == 60
    stats = server.stats()
    usage = result.llm_usage["writer"]
    assert usage["calls"] == stats["succeeded"] == 120
    assert usage["retries"] == rule["times"] and usage["failed_cells"] == 0
    assert usage["errors"] == {code: rule["times"]}
    assert load_dataset(result.path).equals(
        generate(chain_config(server.base_url), 60, buffer_size=30, artifact_path=tmp_path / "clean").load()
    )


def test_429_lowers_concurrency_and_honours_retry_after(tmp_path, server):
    server.set_latency(20)
    server.set_faults([{"kind": "status", "status": 429, "retry_after": 0.2, "times": 30}])
    config = chain_config(server.base_url, max_parallel_requests=8)
    result = generate(config, 80, buffer_size=80, artifact_path=tmp_path)
    usage = result.llm_usage["writer"]
    assert result.num_records == 80
    assert usage["throttled"] == 30 and usage["errors"] == {"429": 30} and usage["retries"] == 30
    assert usage["lowest_concurrency"] < 8
    stats = server.stats()
    assert stats["by_status"]["429"] == 30 and stats["max_in_flight"] <= 8
    # Each throttled request is sent again only after the Retry-After it was given (0.2 s).
    log = sorted(stats["request_log"], key=lambda e: e["t_start"])
    waits = [
        next(later["t_start"] for later in log if later["key"] == e["key"] and later["t_start"] > e["t_end"])
        - e["t_end"]
        for e in log
        if e["status"] == 429
    ]
    assert len(waits) == 30 and min(waits) >= 0.19, waits


def test_row_group_over_the_failure_share_fails_cleanly(tmp_path, server):
    config = chain_config(server.base_url, max_retries=1)
    config["columns"][0] = {"name": "topic", "type": "category", "values": ["cats", "ships"]}
    server.set_faults([{"kind": "status", "status": 500, "match": "about ships"}])
    with pytest.raises(GenerationError) as info:
        generate(config, 40, buffer_size=20, artifact_path=tmp_path, dataset_name="fails")
    message = str(info.value)
    assert "row group 0 failed" in message and "model 'writer' (test-model)" in message
    assert "500 x" in message and "Injected fault: HTTP 500" in message and "max_failed_row_share of 10%" in message
    meta = load_metadata(tmp_path / "fails" / "metadata.json")
    assert meta.completed == {} and meta.status == "in_progress"
    assert not list((tmp_path / "fails" / "parquet-files").glob("batch_*"))
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    run = run_dd(
        "generate", path, "-n", 40, "--buffer-size", 20, "--artifact-path", tmp_path, "--dataset-name", "fails"
    )
    assert run.returncode == 6 and "Traceback" not in run.stderr and "row group 0 failed" in run.stderr


def test_usage_is_in_metadata_and_the_run_summary(tmp_path, server):
    path = tmp_path / "chain.json"
    path.write_text(json.dumps(chain_config(server.base_url)))
    run = run_dd("generate", path, "-n", 50, "--buffer-size", 25, "--artifact-path", tmp_path)
    assert run.returncode == 0, run.stderr
    assert "Model writer (test-model): 100 calls, 0 cached, 0 retries, 0 failed cells, errors: none" in run.stdout
    meta = json.loads((tmp_path / "chain" / "metadata.json").read_text())
    usage = meta["llm_usage"]["writer"]
    assert usage["calls"] == 100 and usage["prompt_tokens"] > 0 and usage["completion_tokens"] > 0


def test_the_api_key_never_reaches_files_or_logs(tmp_path, monkeypatch, caplog):
    secret = "sk-test-7f3a9c-DO-NOT-LEAK"
    monkeypatch.setenv("DD_TEST_KEY", secret)
    caplog.set_level(logging.DEBUG)
    with OpenAIServer(api_key=secret) as srv:
        srv.set_faults([{"kind": "status", "status": 500, "times": 3}])
        config = chain_config(srv.base_url, api_key_env="DD_TEST_KEY")
        result = generate(config, 20, buffer_size=10, artifact_path=tmp_path)
        assert srv.stats()["auth_header_requests"] >= 40
        path = tmp_path / "chain.json"
        path.write_text(json.dumps(config))
        run = run_dd(
            "generate", path, "-n", 30, "--buffer-size", 10, "--artifact-path", tmp_path, env={"DD_TEST_KEY": secret}
        )
        assert run.returncode == 0, run.stderr
    for file in result.path.rglob("*"):
        if file.is_file():
            assert secret.encode() not in file.read_bytes(), file
    assert secret not in caplog.text and secret not in run.stdout + run.stderr
    assert "DD_TEST_KEY" in (result.path / "config.json").read_text()  # only the variable's name


def test_missing_key_variable_is_a_config_error(tmp_path, server, monkeypatch):
    monkeypatch.delenv("DD_ABSENT_KEY", raising=False)
    path = tmp_path / "c.json"
    path.write_text(json.dumps(chain_config(server.base_url, api_key_env="DD_ABSENT_KEY")))
    run = run_dd("generate", path, "-n", 5, "--artifact-path", tmp_path)
    assert run.returncode == 2 and "$DD_ABSENT_KEY, which is not set" in run.stderr


def test_fingerprint_ignores_endpoints_secrets_and_limits_but_not_model_settings():
    def hash_of(**model) -> str:
        return fingerprint(load_config(chain_config("http://127.0.0.1:1/v1", **model)))["config_hash"]

    base = hash_of()
    assert hash_of(base_url="http://10.0.0.1/v1") == base
    assert hash_of(api_key_env="OTHER_KEY") == base
    assert hash_of(max_parallel_requests=64, adaptive_concurrency=False, timeout_s=5, max_retries=0) == base
    for changed in (
        {"model": "other-model"},
        {"temperature": 0.2},
        {"top_p": 0.5},
        {"max_tokens": 64},
        {"extra_body": {"min_p": 0.1}},
    ):
        assert hash_of(**changed) != base, changed
    renamed = chain_config("http://127.0.0.1:1/v1")
    renamed["models"][0]["alias"] = "w2"
    for col in renamed["columns"][1:3]:
        col["model"] = "w2"
    renamed["models"].append({"alias": "unused", "model": "big", "temperature": 1.0})
    assert fingerprint(load_config(renamed))["config_hash"] == base
    prompt = chain_config("http://127.0.0.1:1/v1")
    prompt["columns"][1]["prompt"] += " Be brief."
    assert fingerprint(load_config(prompt))["config_hash"] != base


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        ({"model": "nope"}, "model", "unknown model alias 'nope'"),
        ({"prompt": "{{ nothing }}"}, "prompt", "unknown column 'nothing'"),
        ({"prompt": "{{ topic.__class__ }}"}, "prompt", "'__class__'"),
    ],
)
def test_llm_column_config_errors(change, field, words):
    from dd_core import DDConfigError

    config = chain_config("http://127.0.0.1:1/v1")
    config["columns"][1].update(change)
    with pytest.raises(DDConfigError) as info:
        load_config(config)
    assert (
        info.value.issues[0].column == "question" and info.value.issues[0].field == field and words in str(info.value)
    )


def test_samplers_cannot_read_llm_columns_and_keys_are_names_not_values():
    from dd_core import DDConfigError

    config = chain_config("http://127.0.0.1:1/v1")
    config["columns"].append({"name": "kind", "type": "subcategory", "parent": "answer", "values": {"x": ["y"]}})
    with pytest.raises(
        DDConfigError,
        match="column 'kind', field 'dependencies': a subcategory column cannot depend on LLM-written columns",
    ):
        load_config(config)
    config = chain_config("http://127.0.0.1:1/v1", api_key_env="sk-abc123")
    with pytest.raises(DDConfigError, match="NAME of an environment variable"):
        load_config(config)


@pytest.mark.parametrize(
    "constant",
    [
        {"model": "m"},
        {
            "model": "m",
            "temperature": 0.7,
            "top_p": 1e-05,
            "max_tokens": 64,
            "min_p": float("nan"),
            "a": [1, {"z": "é", "b": None}],
        },
        {
            "model": "m",
            "response_format": {
                "type": "json_schema",
                "json_schema": {"schema": {"properties": {"é": {"type": "string"}}}},
            },
            "zz": True,
        },
        {"model": "m", "messagez": 1, "seea": 2, "sf": 3},
    ],
)
def test_request_bodies_are_the_canonical_serialisation_byte_for_byte(constant):
    """The cache key is the sha256 of these bytes: a different encoding would make a resumed
    run pay again for every call an older dd version had cached."""
    from dd_core.engine.llm.wire import BodyTemplate, encode_chat, serialise

    system, user = 'Say "hi" \\ ✓\n\u2028\x00', "x" * 3 + " é \U0001f600 \x1f"
    for sent, msgs in [
        (encode_chat(system, user), [{"role": "system", "content": system}, {"role": "user", "content": user}]),
        (encode_chat(None, user), [{"role": "user", "content": user}]),
    ]:
        for seed in (0, 7, 2**31 - 1):
            assert BodyTemplate(constant).payload(sent, seed) == serialise({**constant, "messages": msgs, "seed": seed})


def test_cache_lines_are_what_json_dumps_writes():
    from dd_core.engine.llm.wire import cache_line

    for content in ("plain", 'quote " back \\ slash', "é ✓ \u2028 \x01 \n end"):
        entry = {"key": "ab" * 32, "content": content, "prompt_tokens": 3, "completion_tokens": 1234}
        assert cache_line("ab" * 32, content, 3, 1234) == json.dumps(entry, ensure_ascii=False) + "\n"
