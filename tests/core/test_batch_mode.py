"""Batch mode through ddsynth generate, against the local server's Files and Batch APIs: the same data
as online, one batch per (row group, LLM column), crash-safe, retried, and paid for once."""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
from collections import Counter

import httpx
import pytest

from dd_core import GenerationError, generate, load_dataset
from dd_core.orchestration import read_table, strip_dd_metadata
from dd_core.testing.llm_server import OpenAIServer
from tests.core.test_llm_columns import all_types_config, chain_config
from tests.support import ROOT, batch_clock_moved_by_polls, polled_in_progress, run_dd, wait_for

PRICE = {"input_per_mtok": 2.5, "output_per_mtok": 10.0, "batch_discount": 0.5}
LLM_COLUMNS = ("question", "answer")


def batch_config(url: str, **model) -> dict:
    return chain_config(url, batch=True, batch_poll_interval_s=0.05, **model)


@pytest.fixture(scope="module")
def server():
    with OpenAIServer(latency_ms=2) as running:
        yield running


@pytest.fixture(autouse=True)
def fresh(server):
    server.reset_for_next_test()


def table_of(path):
    """The dataset's rows as one Arrow table (exact comparison, nested values included)."""
    import pyarrow as pa

    from dd_core.interface.api import dataset_files

    return pa.concat_tables(strip_dd_metadata(read_table(f)) for f in dataset_files(path))


def batches(server) -> Counter:
    """How many batches the server saw per (row group, column)."""
    return Counter((b["metadata"]["dd_row_group"], b["metadata"]["dd_column"]) for b in server.batch_stats()["batches"])


def batch_tokens(server) -> tuple[int, int]:
    """Prompt and completion tokens the server reported in every batch output file."""
    prompt = completion = 0
    with httpx.Client(base_url=server.base_url, trust_env=False) as http:
        for batch in server.batch_stats()["batches"]:
            status = http.get(f"/batches/{batch['id']}").json()
            if status["output_file_id"]:
                for line in http.get(f"/files/{status['output_file_id']}/content").text.splitlines():
                    usage = json.loads(line)["response"]["body"]["usage"]
                    prompt += usage["prompt_tokens"]
                    completion += usage["completion_tokens"]
    return prompt, completion


def test_every_column_type_in_batch_mode_equals_online(server, tmp_path):
    config = all_types_config(server.base_url)
    online = generate(config, 40, buffer_size=20, artifact_path=tmp_path, dataset_name="online")
    server.reset_stats()
    config["models"][0].update(batch=True, batch_poll_interval_s=0.05)
    batched = generate(config, 40, buffer_size=20, artifact_path=tmp_path, dataset_name="batch")
    assert server.stats()["requests_total"] == 0, "no chat-completions request for a batch-mode model"
    columns = ["question", "answer", "profile", "verdict", "snippet"]
    assert batches(server) == Counter({(rg, c): 1 for rg in ("0", "1") for c in columns})
    assert table_of(batched.path).equals(table_of(online.path))
    usage = batched.llm_usage["writer"]
    assert usage["calls"] == usage["batch_calls"] == 200 and usage["cache_hits"] == 0


def test_cost_is_the_servers_tokens_at_the_batch_price_and_rerunning_changes_nothing(server, tmp_path):
    config = batch_config(server.base_url, price=PRICE)
    first = generate(config, 60, buffer_size=30, artifact_path=tmp_path)
    prompt, completion = batch_tokens(server)
    expected = (prompt * 2.5 + completion * 10.0) / 1e6 * 0.5
    spend = first.metadata["llm_spend"]["writer"]
    assert (spend["requests"], spend["batch_requests"], spend["prompt_tokens"], spend["completion_tokens"]) == (
        120,
        120,
        prompt,
        completion,
    )
    assert spend["cost_usd"] == pytest.approx(expected, rel=1e-9) and first.metadata["llm_cost_usd"] == pytest.approx(
        expected, rel=1e-9
    )
    again = generate(config, 60, buffer_size=30, artifact_path=tmp_path)
    assert again.already_complete and again.metadata["llm_cost_usd"] == first.metadata["llm_cost_usd"]
    assert sum(batches(server).values()) == 4, "the second run sent nothing"


def test_without_a_price_there_is_no_cost_anywhere(server, tmp_path):
    result = generate(batch_config(server.base_url), 10, buffer_size=10, artifact_path=tmp_path)
    assert "cost_usd" not in result.metadata["llm_spend"]["writer"] and "llm_cost_usd" not in result.metadata
    run = run_dd(
        "generate", _write(tmp_path, batch_config(server.base_url)), "-n", 10, "--artifact-path", tmp_path / "cli"
    )
    assert run.returncode == 0 and "Cost" not in run.stdout and "$" not in run.stdout


def test_failed_requests_go_into_a_later_batch(server, tmp_path):
    server.set_batch_settings(failure_share=0.25, failures_per_request=1, seed=4)
    result = generate(batch_config(server.base_url), 40, buffer_size=40, artifact_path=tmp_path, dataset_name="b")
    seen = batches(server)
    assert seen[("0", "question")] == 2 and seen[("0", "answer")] == 2, seen
    usage = result.llm_usage["writer"]
    assert usage["retries"] > 0 and usage["errors"]["500"] == usage["retries"] and result.num_records == 40
    server.reset_batches()
    straight = generate(chain_config(server.base_url), 40, buffer_size=40, artifact_path=tmp_path, dataset_name="o")
    assert load_dataset(result.path).equals(straight.load())


def test_requests_failing_past_the_retry_budget_fail_the_row_group(server, tmp_path):
    server.set_batch_settings(failure_share=0.5, failures_per_request=None, seed=1)
    with pytest.raises(GenerationError, match="max_failed_row_share") as caught:
        generate(batch_config(server.base_url, max_retries=1), 20, buffer_size=20, artifact_path=tmp_path)
    assert "500" in str(caught.value)
    assert batches(server)[("0", "question")] == 2, "one batch, then one retry batch (max_retries=1)"


def test_progress_is_logged_while_a_batch_runs(server, tmp_path, caplog):
    server.set_batch_settings(processing_s=0.6)
    with caplog.at_level(logging.INFO, logger="dd.batch"), batch_clock_moved_by_polls(server, 0.1):
        generate(batch_config(server.base_url), 30, buffer_size=30, artifact_path=tmp_path)
    lines = [r.getMessage() for r in caplog.records if r.name == "dd.batch"]
    assert any("in_progress" in line and "of 30 done" in line for line in lines), lines
    assert any(
        line.startswith("row group 0: batch ") and "column 'question'" in line and "submitted, 30 requests" in line
        for line in lines
    ), lines


def _write(tmp_path, config: dict):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    return path


def batch_ids(stats: dict, column: str) -> list[str]:
    return [b["id"] for b in stats["batches"] if b["metadata"]["dd_column"] == column]


@pytest.mark.parametrize("kill_at", ["question", "answer"])
def test_sigkill_while_a_batch_is_in_progress_then_resume_pays_once(server, tmp_path, kill_at):
    server.set_batch_settings(processing_s=1.5)
    config = _write(tmp_path, batch_config(server.base_url, price=PRICE))
    command = [
        sys.executable,
        "-m",
        "dd_core",
        "generate",
        str(config),
        "-n",
        "40",
        "--buffer-size",
        "20",
        "--artifact-path",
        str(tmp_path),
    ]
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        # Batches move on as the run polls them, until both row groups' kill_at batches exist:
        # those stay in progress, and the run is killed once it has polled both.
        both_made = lambda stats: len(batch_ids(stats, kill_at)) == 2  # noqa: E731
        with batch_clock_moved_by_polls(server, 0.1, until=both_made):
            wait_for(lambda: both_made(server.batch_stats()), 60, f"both batches of column {kill_at}")
        held = batch_ids(server.batch_stats(), kill_at)
        wait_for(lambda: polled_in_progress(server.batch_stats(), held), 60, f"the run to poll its {kill_at} batches")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == -signal.SIGKILL
    journals = sorted(p.name for p in (tmp_path / "chain" / "llm-cache").glob("*.batches.jsonl"))
    assert journals == ["rg_00000.batches.jsonl", "rg_00001.batches.jsonl"]
    with batch_clock_moved_by_polls(server, 0.1):
        resumed = run_dd("generate", config, "-n", 40, "--buffer-size", 20, "--artifact-path", tmp_path, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    assert batches(server) == Counter({(rg, c): 1 for rg in ("0", "1") for c in LLM_COLUMNS}), (
        "one batch per (row group, column)"
    )
    keys = [k for b in server.batch_stats()["batches"] for k in b["keys"]]
    assert len(keys) == len(set(keys)) == 80, "no request was submitted twice"
    assert server.stats()["requests_total"] == 0, "no online call"
    assert "Cost of the dataset: $" in resumed.stdout
    metadata = json.loads((tmp_path / "chain" / "metadata.json").read_text())
    prompt, completion = batch_tokens(server)
    assert metadata["llm_spend"]["writer"]["requests"] == 80, "the killed run's batches are paid for once, counted once"
    assert metadata["llm_cost_usd"] == pytest.approx((prompt * 2.5 + completion * 10.0) / 1e6 * 0.5, rel=1e-9)
    server.reset_batches()
    straight = generate(chain_config(server.base_url), 40, buffer_size=20, artifact_path=tmp_path / "straight")
    assert load_dataset(tmp_path / "chain").equals(straight.load())
