"""Exactly N rows that pass: validator columns and an acceptance rule against the test server,
whose replies are fixed by the request (so the judge's scores, and which candidates pass, are
the same in every run)."""

from __future__ import annotations

import json
import random
import re
import signal
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from dd_core import GenerationError, fingerprint, generate, load_config, load_dataset
from dd_core.engine.acceptance import candidate_budget, next_wave_size
from dd_core.engine.in_process import run_row_group
from dd_core.fingerprinting import canonical_json
from dd_core.interface.api import preview_candidates
from dd_core.testing.llm_server import OpenAIServer
from tests.support import EXAMPLES, ROOT, run_dd, structured_check_spend, wait_for

PRICE = {"input_per_mtok": 2.0, "output_per_mtok": 8.0}
RECORDS, BUFFER = 100, 40  # 3 row groups, the last one of 20
RULE = "review.quality.score >= 2 and answer_check.is_valid"


def accepted_config(url: str, accept: str | None = RULE, **extra) -> dict:
    """A question, an answer that reads it, a judge scoring 1 or 2 (about half pass), and a
    validator on the answer."""
    config = {
        "name": "accepted",
        "seed": 5,
        "models": [{"alias": "w", "model": "test-model", "base_url": url, "max_parallel_requests": 8, "price": PRICE}],
        "columns": [
            {"name": "topic", "type": "category", "values": ["cats", "ships", "tea", "maps"]},
            {"name": "question", "type": "llm_text", "model": "w", "prompt": "Ask about {{ topic }}."},
            {"name": "answer", "type": "llm_text", "model": "w", "prompt": "Answer: {{ question }}"},
            {
                "name": "review",
                "type": "llm_judge",
                "model": "w",
                "prompt": "Judge: {{ answer }}",
                "scores": [{"name": "quality", "options": [1, 2]}],
            },
            {
                "name": "answer_check",
                "type": "validation",
                "validator": "regex",
                "pattern": "Reply [0-9a-f]{6}",
                "target_columns": ["answer"],
            },
        ],
        **extra,
    }
    if accept is not None:
        config["accept"] = accept
    return config


def batch_files(folder: Path, sub: str = "parquet-files") -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((folder / sub).glob("batch_*.parquet"))}


def cached_keys(folder: Path) -> set[str]:
    keys = set()
    for log in (folder / "llm-cache").glob("rg_*.jsonl"):
        for line in log.read_text().splitlines():
            try:
                keys.add(json.loads(line)["key"])
            except (ValueError, KeyError):
                pass  # a line cut short by the kill
    return keys


@pytest.fixture
def server():
    with OpenAIServer(latency_ms=5) as srv:
        yield srv


def test_exactly_num_records_rows_all_passing_identical_for_any_worker_count_and_paid_for_every_candidate(
    tmp_path, server
):
    config = accepted_config(server.base_url, keep_rejected=True)
    one = generate(config, RECORDS, buffer_size=BUFFER, artifact_path=tmp_path, dataset_name="one")
    calls = server.stats()["succeeded"]
    two = generate(config, RECORDS, buffer_size=BUFFER, artifact_path=tmp_path, dataset_name="two", workers=2)

    rows = load_dataset(one.path).to_dict("records")
    assert len(rows) == RECORDS
    assert all(r["review"]["quality"]["score"] >= 2 and r["answer_check"]["is_valid"] for r in rows)
    assert batch_files(one.path) == batch_files(two.path)
    assert batch_files(one.path, "rejected-candidates") == batch_files(two.path, "rejected-candidates")

    counts = one.metadata["acceptance"]
    assert counts == two.metadata["acceptance"]
    assert counts["candidates"] > RECORDS and counts["accepted"] >= RECORDS and counts["failed"] == 0
    assert 0.3 < counts["rate"] < 0.7  # the judge scores 1 or 2, drawn per request
    # Every candidate made three calls, accepted or not; each was paid once, at the prices. So was
    # the one request before row group 0 that checked the server takes the judge's way of asking for JSON.
    spend = one.metadata["llm_spend"]["w"]
    assert spend["requests"] == calls == 3 * counts["candidates"] + 1
    entries = [json.loads(line) for log in (one.path / "llm-cache").glob("*.jsonl") for line in log.open()]
    check = structured_check_spend(server, config)
    prompt = sum(e["prompt_tokens"] for e in entries) + check.prompt_tokens
    completion = sum(e["completion_tokens"] for e in entries) + check.completion_tokens
    assert (spend["prompt_tokens"], spend["completion_tokens"]) == (prompt, completion)
    assert one.metadata["llm_cost_usd"] == pytest.approx((prompt * 2.0 + completion * 8.0) / 1e6, rel=1e-12)

    # Rejected candidates are beside the dataset, never in it, each with its position and verdicts.
    rejected = pq.read_table(one.path / "rejected-candidates" / "batch_00000.parquet").to_pylist()
    assert rejected and all(r["review"]["quality"]["score"] < 2 or not r["answer_check"]["is_valid"] for r in rejected)
    assert len({r["_dd_candidate"] for r in rejected}) == len(rejected)
    assert "_dd_candidate" not in load_dataset(one.path).columns


def test_the_rows_are_the_first_accepted_candidates_of_the_stream(server):
    """Without the rule, row i of a longer row group is candidate i: the accepted rows are the
    passing ones of that sequence, in order (a prefix of them when the row group is full)."""
    stream = run_row_group(accepted_config(server.base_url, accept=None), 1, 120, buffer_size=BUFFER).table
    chosen = run_row_group(accepted_config(server.base_url), 1, BUFFER, buffer_size=BUFFER)
    passing = [r for r in stream.to_pylist() if r["review"]["quality"]["score"] >= 2]
    assert chosen.table.to_pylist() == passing[:BUFFER]
    assert chosen.acceptance.accepted >= BUFFER and chosen.acceptance.budget == 3 * BUFFER


def test_a_killed_run_resumes_to_the_same_bytes_and_sends_no_answered_call_again(tmp_path):
    with OpenAIServer(latency_ms=20) as server:
        config_path = tmp_path / "accepted.json"
        config_path.write_text(json.dumps(accepted_config(server.base_url)))
        straight = generate(config_path, RECORDS, buffer_size=BUFFER, artifact_path=tmp_path / "straight")
        every_call = server.stats()["succeeded"]
        server.reset_stats()

        folder = tmp_path / "killed" / "accepted"
        rng = random.Random(2311)
        for workers in ("2", "1"):  # killed twice, at random points
            proc = subprocess.Popen(
                [sys.executable, "-m", "dd_core", "generate", str(config_path), "-n", str(RECORDS)]
                + ["--buffer-size", str(BUFFER), "--artifact-path", str(tmp_path / "killed"), "--workers", workers],
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            target = server.stats()["succeeded"] + rng.randint(1, every_call // 3)
            try:
                wait_for(
                    lambda p=proc, t=target: server.stats()["succeeded"] >= t or p.poll() is not None, 120, "calls"
                )
            finally:
                proc.send_signal(signal.SIGKILL)
                proc.wait(timeout=60)

        cached = cached_keys(folder)
        before = server.stats()["succeeded"]
        resumed = generate(config_path, RECORDS, buffer_size=BUFFER, artifact_path=tmp_path / "killed")
        sent_by_resume = server.stats()["succeeded"] - before

    assert 0 < len(cached) < every_call
    # Every call the killed runs had received (and so cached) came from the cache: the resumed
    # run sent exactly the calls that were never answered to a run. The first killed run had made
    # the structured-output check (one of every_call), so the later ones did not.
    assert sent_by_resume == every_call - 1 - len(cached)
    assert batch_files(resumed.path) == batch_files(straight.path)
    assert resumed.metadata["acceptance"] == straight.metadata["acceptance"]
    assert resumed.metadata["llm_spend"] == straight.metadata["llm_spend"]


def test_a_rule_that_accepts_nothing_fails_at_the_budget_with_the_rate_in_the_message(tmp_path, server):
    config_path = tmp_path / "never.json"
    never = accepted_config(server.base_url, accept="review.quality.score > 2", max_candidates_per_record=2.5)
    config_path.write_text(json.dumps(never))
    run = run_dd("generate", config_path, "-n", 20, "--buffer-size", 20, "--artifact-path", tmp_path)
    assert run.returncode == 6, run.stdout + run.stderr
    message = " ".join(run.stderr.split())
    assert "passed 0 of 50 judged candidates (acceptance rate 0.0%)" in message
    assert "max_candidates_per_record (2.5) allows 50 candidates for its 20 rows" in message
    assert "Traceback" not in run.stderr
    # The budget was spent exactly: 50 candidates of three calls, all cached for a rerun (and the
    # structured-output check before row group 0).
    assert server.stats()["succeeded"] == 3 * 50 + 1


def test_max_failed_row_share_may_allow_a_short_row_group(server):
    # About half pass: a budget of 1.2 candidates per row leaves the row group short.
    config = accepted_config(server.base_url, max_candidates_per_record=1.2, max_failed_row_share=0.6)
    result = run_row_group(config, 0, BUFFER)
    assert result.acceptance.candidates == 48 and result.table.num_rows == result.acceptance.accepted < BUFFER
    with pytest.raises(GenerationError, match=r"acceptance rate \d+\.\d%"):
        run_row_group({**config, "max_failed_row_share": 0.1}, 0, BUFFER)


def test_waves_are_sized_from_the_rate_seen_and_never_pass_the_budget():
    assert next_wave_size(100, 0, 0, 300) == 100
    assert next_wave_size(100, 50, 100, 300) == 111  # 50 missing at ~50%, with a 10% margin
    assert next_wave_size(100, 0, 100, 300) == 200  # nothing passed: the rest of the budget
    assert next_wave_size(100, 100, 150, 300) == 0
    assert next_wave_size(100, 99, 300, 300) == 0
    assert candidate_budget(load_config(accepted_config("http://x", max_candidates_per_record=1.5)), 33) == 49


def test_the_fingerprint_covers_validators_the_rule_and_the_budget_and_nothing_else():
    base = accepted_config("http://127.0.0.1:1/v1")

    def hash_of(**changes) -> str:
        return fingerprint(load_config({**base, **changes}))["config_hash"]

    validator = dict(base["columns"][-1], pattern="Reply [0-9a-f]{5}")
    assert hash_of(columns=[*base["columns"][:-1], validator]) != hash_of()
    assert hash_of(accept="review.quality.score >= 1") != hash_of()
    assert hash_of(max_candidates_per_record=4) != hash_of()
    assert hash_of(keep_rejected=True) == hash_of()
    # A config without a rule keeps the fingerprint it had before rules existed.
    without = load_config(accepted_config("http://x", accept=None))
    assert "accept" not in canonical_json(without) and "max_candidates" not in canonical_json(without)
    assert "keep_rejected" not in json.dumps(without.resolved_dump())


@pytest.mark.parametrize("columns", ["400", "80"])  # one wide table; one block per candidate
def test_preview_shows_the_candidates_in_stream_order_with_the_rules_verdict(tmp_path, server, columns):
    config_path = tmp_path / "accepted.json"
    config = accepted_config(server.base_url, max_candidates_per_record=6)
    config_path.write_text(json.dumps(config))
    run = run_dd("preview", config_path, "-n", 6, env={"COLUMNS": columns})
    assert run.returncode == 0, run.stdout + run.stderr

    expected = preview_candidates(config_path, 6)
    kept = run_row_group(config, 0, 6, buffer_size=6).table.to_pylist()
    assert expected["verdict"].tolist().count("accepted") == 6
    assert expected[expected["verdict"] == "accepted"]["answer"].tolist() == [r["answer"] for r in kept]
    positions = expected["candidate"].tolist()
    assert positions[0] == 0 and positions == sorted(set(positions))  # stream order
    # Every candidate is printed with its verdict and the answer the verdict is about.
    verdicts = re.findall(r"^\s*verdict\s+(accepted|rejected)\s*$", run.stdout, flags=re.M)
    assert verdicts.count("accepted") == 6 and verdicts.count("rejected") == len(expected) - 6 > 0
    for answer in expected["answer"]:
        assert answer[:12] in run.stdout


def test_the_example_config_validates_and_shows_its_rule():
    run = run_dd("validate", EXAMPLES / "support_tickets_accepted.yaml")
    assert run.returncode == 0, run.stderr
    assert "accept: review.helpfulness.score >= 2 and diagnostic_check.is_valid" in run.stdout
    assert "up to 3 candidates per record" in run.stdout
