"""Azure OpenAI and Anthropic models through ``ddsynth generate``, online and through their batch
APIs, against the local server speaking each protocol: every LLM column type, the same data
either way, crash-safe batches never re-submitted, lost replies, retried lines, cost from the
server's own token counts, 429 and 529 honoured."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections import Counter

import pytest

from dd_core import GenerationError, generate, load_dataset
from dd_core.testing.llm_server import OpenAIServer
from tests.core.test_batch_mode import table_of
from tests.core.test_llm_columns import all_types_config
from tests.providers import (
    KEY,
    KEY_ENV,
    PRICE,
    PROVIDERS,
    batch_mode,
    config_for,
    reported_batch_tokens,
    server_batches,
    submitted_keys,
)
from tests.support import ROOT, batch_clock_moved_by_polls, polled_in_progress, run_dd, wait_for

pytestmark = pytest.mark.parametrize("provider", PROVIDERS)

ALL_TYPES = ("question", "answer", "profile", "verdict", "snippet")


@pytest.fixture(scope="module")
def server():
    # No /metrics, as at a hosted provider.
    with OpenAIServer(latency_ms=2, api_key=KEY, metrics=False) as running:
        yield running


@pytest.fixture(autouse=True)
def fresh(server, monkeypatch):
    server.reset_for_next_test()
    server.clear_rate_limits()
    monkeypatch.setenv(KEY_ENV, KEY)


def test_every_column_type_online_and_in_batch_mode_gives_the_same_dataset(server, tmp_path, provider):
    online = generate(
        config_for(server, provider, all_types_config), 40, buffer_size=20, artifact_path=tmp_path, dataset_name="on"
    )
    # 200 cells, and the check before row group 0 that the server takes the JSON mode.
    assert server.stats()["by_status"] == {"200": 201} and not server_batches(server, provider)
    server.reset_stats()
    config = config_for(server, provider, all_types_config, **batch_mode(price=PRICE))
    batched = generate(config, 40, buffer_size=20, artifact_path=tmp_path, dataset_name="batch")
    assert server.stats()["requests_total"] == 0, "no online request for a batch-mode model"
    assert len(server_batches(server, provider)) == 2 * len(ALL_TYPES), "one batch per (row group, column)"
    assert table_of(batched.path).equals(table_of(online.path))
    usage = batched.llm_usage["writer"]
    assert usage["calls"] == usage["batch_calls"] == 200 and usage["provider"] == provider
    prompt, completion = reported_batch_tokens(server, provider)
    spend = batched.metadata["llm_spend"]["writer"]
    assert (spend["batch_prompt_tokens"], spend["batch_completion_tokens"]) == (prompt, completion)
    expected = (prompt * PRICE["input_per_mtok"] + completion * PRICE["output_per_mtok"]) / 1e6 * 0.5
    assert batched.metadata["llm_cost_usd"] == pytest.approx(expected, rel=1e-9)


def test_switching_a_dataset_to_batch_mode_buys_nothing_twice(server, tmp_path, provider):
    generate(config_for(server, provider), 20, buffer_size=20, artifact_path=tmp_path)
    server.reset_stats()
    again = generate(config_for(server, provider, **batch_mode()), 40, buffer_size=20, artifact_path=tmp_path)
    assert again.num_records == 40 and server.stats()["requests_total"] == 0
    assert len(submitted_keys(server, provider)) == 40, "only the new row group's 2 x 20 requests went into batches"


@pytest.mark.parametrize("kill_at", ["question", "answer"])
def test_sigkill_while_a_batch_is_pending_then_resume_polls_and_never_resubmits(server, tmp_path, provider, kill_at):
    server.set_batch_settings(processing_s=1.0)
    server.stop_batch_clock()  # batches stay in progress until the resumed run's clock moves
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config_for(server, provider, **batch_mode(price=PRICE))))
    command = [sys.executable, "-m", "dd_core", "generate", str(path), "-n", "40", "--buffer-size", "20"]
    proc = subprocess.Popen(
        [*command, "--artifact-path", str(tmp_path)], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        # The question column's batches (one per row group), then the answer column's: those wait
        # for the clock, moved on here until the question batches have ended.
        if kill_at == "answer":
            with batch_clock_moved_by_polls(server, 0.2, until=lambda stats: len(stats["batches"]) > 2):
                wait_for(lambda: len(server_batches(server, provider)) > 2, 60, "a batch of column answer")
        wait_for(
            lambda: polled_in_progress(server.batch_stats(), [b["id"] for b in server_batches(server, provider)][-1:]),
            60,
            f"dd polling a batch of column {kill_at} in progress",
        )
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == -signal.SIGKILL
    pending = {b["id"] for b in server_batches(server, provider)}
    server.run_batch_clock()
    resumed = run_dd("generate", path, "-n", 40, "--buffer-size", 20, "--artifact-path", tmp_path, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    batches = server_batches(server, provider)
    assert pending <= {b["id"] for b in batches} and len(batches) == 4, (
        "one batch per (row group, column): " + batch_story(server, provider, pending) + resumed.stderr[-2000:]
    )
    keys = submitted_keys(server, provider)
    assert len(keys) == len(set(keys)) == 80, "no request was submitted twice"
    assert server.stats()["requests_total"] == 0, "no online request"
    metadata = json.loads((tmp_path / "chain" / "metadata.json").read_text())
    prompt, completion = reported_batch_tokens(server, provider)
    assert metadata["llm_spend"]["writer"]["requests"] == 80, "the killed run's batches are paid for once"
    assert metadata["llm_cost_usd"] == pytest.approx((prompt * 3.0 + completion * 15.0) / 1e6 * 0.5, rel=1e-9)
    server.reset_batches()
    straight = generate(config_for(server, provider), 40, buffer_size=20, artifact_path=tmp_path / "straight")
    assert load_dataset(tmp_path / "chain").equals(straight.load())


def batch_story(server, provider: str, pending: set[str]) -> str:
    """Each batch (pending at the kill or not) with its status and size, and the batch API calls
    made, for a failure's message: which run made the batches a test did not expect."""
    stats = server.batch_stats()
    lines = [
        f"{'pending ' if b['id'] in pending else ''}{b['id']} {b['status']} {b['requests']} requests"
        for b in stats["batches"]
        if b["protocol"] == provider
    ]
    calls = [f"{c['op']} {c.get('batch_id', '')}".strip() for c in stats["log"]][-60:]
    return "\n" + "\n".join(lines) + "\ncalls: " + ", ".join(calls) + "\nresumed run's stderr: "


def test_a_lost_create_reply_makes_no_second_batch(server, tmp_path, provider):
    server.set_batch_settings(lose_create_replies=1)
    result = generate(config_for(server, provider, **batch_mode()), 20, buffer_size=20, artifact_path=tmp_path)
    assert result.num_records == 20 and result.llm_usage["writer"]["retries"] == 0
    assert len(server_batches(server, provider)) == 2, "the batch of the lost reply was found, not made again"
    keys = submitted_keys(server, provider)
    assert len(keys) == len(set(keys)) == 40


@pytest.mark.parametrize("fault", ["failure_share", "expire_share"])
def test_errored_and_expired_lines_go_into_a_later_batch(server, tmp_path, provider, fault):
    server.set_batch_settings(**{fault: 0.25, "failures_per_request": 1, "seed": 4})
    result = generate(config_for(server, provider, **batch_mode()), 40, buffer_size=40, artifact_path=tmp_path)
    assert result.num_records == 40
    usage = result.llm_usage["writer"]
    code = {"failure_share": "500" if provider == "azure" else "api_error", "expire_share": "batch_expired"}[fault]
    assert usage["retries"] > 0 and usage["errors"] == {code: usage["retries"]}
    assert len(server_batches(server, provider)) > 2, "the failed lines went into later batches"
    server.reset_batches()
    straight = generate(config_for(server, provider), 40, buffer_size=40, artifact_path=tmp_path / "straight")
    assert load_dataset(result.path).equals(straight.load())


@pytest.mark.parametrize("status", [504, 529])
def test_timed_out_and_overloaded_lines_go_into_a_later_batch(server, tmp_path, provider, status):
    """Anthropic's ``timeout_error`` and ``overloaded_error`` lines (Azure's 504 and 529) are transient."""
    server.set_batch_settings(failure_share=0.25, failure_status=status, failures_per_request=1, seed=4)
    result = generate(config_for(server, provider, **batch_mode()), 40, buffer_size=40, artifact_path=tmp_path)
    usage = result.llm_usage["writer"]
    code = str(status) if provider == "azure" else {504: "timeout_error", 529: "overloaded_error"}[status]
    assert result.num_records == 40 and usage["retries"] > 0 and usage["errors"] == {code: usage["retries"]}


def test_lines_failing_past_max_retries_fail_the_row_group(server, tmp_path, provider):
    server.set_batch_settings(failure_share=0.5, failures_per_request=None, seed=1)
    with pytest.raises(GenerationError, match="max_failed_row_share"):
        generate(config_for(server, provider, **batch_mode(max_retries=1)), 20, buffer_size=20, artifact_path=tmp_path)
    sent = Counter(submitted_keys(server, provider))
    assert max(sent.values()) == 2, "a failing request is sent once, then retried once (max_retries=1)"


def test_a_refused_request_inside_a_batch_is_not_retried(server, tmp_path, provider):
    server.set_batch_settings(failure_share=0.5, failure_status=400, failures_per_request=None, seed=1)
    with pytest.raises(GenerationError, match="max_failed_row_share") as caught:
        generate(config_for(server, provider, **batch_mode()), 20, buffer_size=20, artifact_path=tmp_path)
    assert ("400" if provider == "azure" else "invalid_request_error") in str(caught.value)
    keys = submitted_keys(server, provider)
    assert len(keys) == len(set(keys)), "an invalid request is not sent again"


def test_a_429_with_a_long_retry_after_is_honoured_not_retried_blindly(server, tmp_path, provider):
    server.set_faults([{"kind": "status", "status": 429, "retry_after": 3600}])
    config = config_for(server, provider, retry_wait_budget_s=30)
    with pytest.raises(GenerationError) as caught:
        generate(config, 4, buffer_size=4, artifact_path=tmp_path)
    assert "asked to wait 3600 s (Retry-After)" in str(caught.value)
    assert server.stats()["requests_total"] == 4, "each cell asked once, then gave up at once"


def test_a_429_retry_after_is_waited_before_the_retry(server, tmp_path, provider):
    server.set_faults([{"kind": "status", "status": 429, "retry_after": 0.4, "times": 1}])
    result = generate(config_for(server, provider), 1, buffer_size=1, artifact_path=tmp_path)
    usage = result.llm_usage["writer"]
    assert (usage["throttled"], usage["retries"], result.num_records) == (1, 1, 1)
    first, retry = server.stats()["request_log"][:2]
    assert first["status"] == 429 and retry["t_start"] - first["t_end"] >= 0.4
