"""Azure OpenAI and Anthropic keys never reach a file or an output, whatever the server does: it
echoes the key in errors, in replies and in batch results, sends bodies of the wrong shape, cuts
a results file short, or never ends a batch."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.hostile.conftest import KEY_ENV, llm_config, write_config
from tests.hostile.harness import SECRET, assert_no_secret, assert_no_secret_in_files, check, invoke
from tests.support import ROOT, wait_for

SETTINGS = {
    "azure": {"provider": "azure", "api_version": "2024-10-21"},
    "anthropic": {"provider": "anthropic", "max_tokens": 64},
}
#: The header each provider's key travels in (what a hostile server echoes).
KEY_HEADER = {"azure": "api-key", "anthropic": "x-api-key"}
ERROR = {
    "azure": '{"error": {"code": "500", "message": "Bad key {echo}"}}',
    "anthropic": '{"type": "error", "error": {"type": "api_error", "message": "Bad key {echo}"}}',
}
REPLY = {
    "azure": '{"choices": [{"index": 0, "message": {"role": "assistant", "content": "my key is {echo}"}}], '
    '"usage": {"prompt_tokens": 3, "completion_tokens": 4}}',
    "anthropic": '{"type": "message", "content": [{"type": "text", "text": "my key is {echo}"}], '
    '"usage": {"input_tokens": 3, "output_tokens": 4}}',
}
MALFORMED = {
    "azure": '{"choices": [{"message": {"content": 42}}]}',
    "anthropic": '{"type": "message", "content": "not blocks", "usage": {}}',
}

pytestmark = pytest.mark.parametrize("provider", list(SETTINGS))


def config(llm, provider: str, **model) -> dict:
    return llm_config(llm.root_url, **SETTINGS[provider], **model)


def generate(tmp_path: Path, cfg: dict, env: dict, n: int = 4):
    path = write_config(tmp_path / "llm.yaml", cfg)
    return invoke("generate", path, "-n", n, "--buffer-size", n, "--artifact-path", tmp_path / "out", env=env)


@pytest.fixture(autouse=True)
def batches_reset(llm):
    llm.reset_batches()
    llm.set_batch_settings()
    yield
    llm.reset_batches()
    llm.set_batch_settings()


def test_a_key_echoed_in_errors(tmp_path, llm, key_env, provider):
    llm.set_faults([{"kind": "raw", "status": 500, "body": ERROR[provider], "echo_header": KEY_HEADER[provider]}])
    check(generate(tmp_path, config(llm, provider), key_env), 6, "HTTP 500", "Bad key ***")
    assert_no_secret_in_files(tmp_path)


def test_a_key_echoed_in_replies(tmp_path, llm, key_env, provider):
    llm.set_faults([{"kind": "raw", "status": 200, "body": REPLY[provider], "echo_header": KEY_HEADER[provider]}])
    check(generate(tmp_path, config(llm, provider), key_env), 0, "Generated 1 row group(s)")
    table = pq.read_table(tmp_path / "out" / "llm" / "parquet-files" / "batch_00000.parquet")
    assert set(table.column("question").to_pylist()) == {"my key is ***"}
    assert_no_secret_in_files(tmp_path)


def test_a_body_of_the_wrong_shape(tmp_path, llm, key_env, provider):
    llm.set_faults([{"kind": "raw", "status": 200, "body": MALFORMED[provider]}])
    words = "'choices[0].message.content' is number" if provider == "azure" else "'content' is string"
    check(generate(tmp_path, config(llm, provider), key_env), 6, "malformed x", words)
    assert_no_secret_in_files(tmp_path)


def test_a_key_echoed_in_batch_results(tmp_path, llm, key_env, provider):
    llm.set_batch_settings(echo_header=KEY_HEADER[provider])
    cfg = config(llm, provider, batch=True, batch_poll_interval_s=0.05)
    check(generate(tmp_path, cfg, key_env), 0, "Generated 1 row group(s)")
    questions = pq.read_table(tmp_path / "out" / "llm" / "parquet-files" / "batch_00000.parquet").column("question")
    assert all(q.startswith("*** ") for q in questions.to_pylist())
    assert_no_secret_in_files(tmp_path)


def test_a_results_file_cut_short(tmp_path, llm, key_env, provider):
    llm.set_batch_settings(cut_results=True, echo_header=KEY_HEADER[provider])
    cfg = config(llm, provider, batch=True, batch_poll_interval_s=0.05)
    outcome = generate(tmp_path, cfg, key_env)
    check(outcome, 6, "row group 0 failed", "without a result for this request")
    assert_no_secret_in_files(tmp_path)


def test_a_batch_that_never_ends(tmp_path, llm, provider):
    """Stopped with SIGTERM while polling: a clean stop, the batch journaled for the next run, no key anywhere."""
    llm.set_batch_settings(processing_s=86_400)
    path = write_config(tmp_path / "llm.yaml", config(llm, provider, batch=True, batch_poll_interval_s=0.05))
    out = tmp_path / "out"
    command = [sys.executable, "-m", "dd_core", "generate", str(path), "-n", "4", "--artifact-path", str(out)]
    env = {**os.environ, KEY_ENV: SECRET}
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: llm.batch_stats()["counts"]["poll"] >= 3, 60, "dd polling its batch")
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode != 0 and "Stopped by SIGTERM" in stderr and "Traceback" not in stderr, stderr
    assert_no_secret(stdout + stderr)
    (journal,) = (out / "llm" / "llm-cache").glob("*.batches.jsonl")
    records = [json.loads(line) for line in journal.read_text().splitlines()]
    assert [r["op"] for r in records] == ["submit", "created"], "journaled, not collected: the next run polls it"
    assert_no_secret_in_files(tmp_path)
