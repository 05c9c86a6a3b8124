"""Batches of a row group end to end against the real server: the collector's flushes, retries of
failed lines, and a run SIGKILLed while its batch is in progress (then resumed: same batch, no
re-submission). The rows here are a small driver of two chained columns; the response cache and
the journal are the production ones."""

from __future__ import annotations

import asyncio
import hashlib
import json
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from dd_core.config.models import ModelConfig
from dd_core.engine.llm.batch_client import BatchClient, bearer, request_line
from dd_core.engine.llm.batch_collector import BatchCollector
from dd_core.engine.llm.batch_journal import BatchJournal, journal_path
from dd_core.engine.llm.batch_runner import BatchRunner, BatchSettings
from dd_core.engine.llm.cache import RowGroupCache, cache_path
from dd_core.engine.llm.client import CallFailed
from dd_core.engine.llm.timeouts import Timeouts
from dd_core.engine.llm.wire import serialise
from dd_core.storage.filesystems import storage_path
from dd_core.testing.llm_server import OpenAIServer
from tests.support import ROOT, batch_clock_moved_by_polls, polled_in_progress, wait_for

COLUMNS = ("question", "answer")
RETRIES = 2


def cell_body(column: str, row: int, context: dict) -> dict:
    prompt = f"Write a question about topic {row}." if column == "question" else f"Answer: {context['question']}"
    return {
        "model": "test-model",
        "messages": [{"role": "user", "content": prompt}],
        "seed": row * 10 + COLUMNS.index(column),
    }


def drive(
    base_url: str, folder: Path, rows: int, *, poll_s: float = 0.02, drop_rows: frozenset[int] = frozenset()
) -> dict:
    """Generate ``rows`` rows of two chained batch-mode columns; each row's values, or None if dropped."""

    async def main() -> dict:
        directory = storage_path(folder)
        cache = RowGroupCache(cache_path(directory, 0))
        journal = BatchJournal.open(journal_path(directory, 0))

        async def store(completions):
            for key, completion in completions.items():
                cache.put(key, completion, "writer", batch=True)
            await cache.persist()

        async with aiohttp.ClientSession() as session:
            client = BatchClient(
                session,
                base_url,
                bearer(None),
                timeouts=Timeouts(30, 30, 30),
                model=ModelConfig(alias="writer", model="test-model", max_retries=3),
            )
            runner = BatchRunner(client, journal, BatchSettings("writer", 0, poll_s), store)
            collector = BatchCollector({"writer": runner}, rows)
            await collector.start()

            async def row(r: int):
                try:
                    if r in drop_rows:
                        return None  # e.g. an online cell of this row failed earlier
                    context = {}
                    for depth, column in enumerate(COLUMNS):
                        payload = serialise(cell_body(column, r, context))
                        key = hashlib.sha256(payload).hexdigest()
                        outcome = cache.get(key)
                        for _ in range(RETRIES + 1):
                            if outcome is not None:
                                break
                            outcome = await collector.request("writer", column, depth, r, key, payload)
                            if isinstance(outcome, CallFailed):
                                if not outcome.retryable:
                                    return None
                                outcome = None
                        if outcome is None:
                            return None
                        context[column] = outcome.content
                    return context
                finally:
                    collector.row_finished()

            try:
                values = await asyncio.gather(*(row(r) for r in range(rows)))
            finally:
                await collector.close()
                await cache.aclose()
                journal.close()
        return {"rows": values, "batches": runner.created_batches}

    return asyncio.run(main())


def online_rows(base_url: str, rows: int) -> list[dict]:
    import httpx

    out = []
    with httpx.Client(base_url=base_url, trust_env=False) as http:
        for r in range(rows):
            context = {}
            for column in COLUMNS:
                context[column] = http.post("/chat/completions", json=cell_body(column, r, context)).json()["choices"][
                    0
                ]["message"]["content"]
            out.append(context)
    return out


@pytest.fixture(scope="module")
def server():
    with OpenAIServer() as running:
        yield running


@pytest.fixture(autouse=True)
def fresh(server):
    server.reset_for_next_test()


def batches_by_column(server) -> list[tuple[str, int]]:
    stats = server.batch_stats()
    return [((b["metadata"] or {}).get("dd_column", "(made by hand)"), b["requests"]) for b in stats["batches"]]


def assert_no_request_in_two_batches(server):
    keys = [k for b in server.batch_stats()["batches"] for k in b["keys"]]
    assert len(keys) == len(set(keys)), "a request was submitted twice"


def test_chained_columns_go_as_one_batch_each_and_equal_online(server, tmp_path):
    out = drive(server.base_url, tmp_path, 30)
    assert batches_by_column(server) == [("question", 30), ("answer", 30)]
    assert server.stats()["requests_total"] == 0, "no online request for a batch-mode model"
    assert out["rows"] == online_rows(server.base_url, 30)
    cache_lines = (tmp_path / "rg_00000.jsonl").read_text().splitlines()
    assert len(cache_lines) == 60, "every batch result is in the response cache"
    again = drive(server.base_url, tmp_path, 30)
    assert again["rows"] == out["rows"] and again["batches"] == 0, "a second run finds everything in the cache"


def test_rows_ahead_of_the_others_wait_instead_of_making_their_own_batch(server, tmp_path):
    drive(server.base_url, tmp_path, 5)  # rows 0-4 done: their cells are cache hits now
    server.reset_batches()
    out = drive(server.base_url, tmp_path, 20)
    assert batches_by_column(server) == [("question", 15), ("answer", 15)]
    assert all(row is not None for row in out["rows"])


def test_dropped_rows_never_submit_later_columns(server, tmp_path):
    out = drive(server.base_url, tmp_path, 10, drop_rows={2, 5})
    assert batches_by_column(server) == [("question", 8), ("answer", 8)]
    assert [i for i, row in enumerate(out["rows"]) if row is None] == [2, 5]


def test_failed_requests_are_retried_in_a_later_batch(server, tmp_path):
    server.set_batch_settings(failure_share=0.3, failures_per_request=1, seed=11)
    out = drive(server.base_url, tmp_path, 40)
    columns = batches_by_column(server)
    assert all(row is not None for row in out["rows"]), "each failed once, then succeeded"
    assert [c for c, _ in columns] == ["question", "question", "answer", "answer"], columns
    assert columns[0][1] == 40 and 0 < columns[1][1] < 40 and columns[2][1] == 40
    assert_no_request_in_two_batches_but_retries(server)
    assert out["rows"] == online_rows(server.base_url, 40)


def assert_no_request_in_two_batches_but_retries(server):
    stats = server.batch_stats()
    for column in COLUMNS:
        seen = [set(b["keys"]) for b in stats["batches"] if b["metadata"]["dd_column"] == column]
        assert seen[1] <= seen[0], "a retry batch holds only requests that failed"


def test_requests_that_keep_failing_drop_their_rows_after_the_retry_budget(server, tmp_path):
    server.set_batch_settings(failure_share=0.2, failures_per_request=None, seed=2)
    out = drive(server.base_url, tmp_path, 30)
    dropped = [i for i, row in enumerate(out["rows"]) if row is None]
    columns = [c for c, _ in batches_by_column(server)]
    assert dropped and columns.count("question") == RETRIES + 1
    assert all(row is not None for i, row in enumerate(out["rows"]) if i not in dropped)


def test_a_batch_refused_by_the_provider_fails_its_cells_without_retry(server, tmp_path):
    server.set_batch_settings(max_requests=5)  # the provider refuses the 10-request file
    out = drive(server.base_url, tmp_path, 10)
    assert out["rows"] == [None] * 10 and batches_by_column(server) == [("question", 10)]


# --- crash and resume ----------------------------------------------------------------------


def child_main() -> None:
    """Run by the SIGKILL test in a subprocess: ``drive`` with base URL, folder and rows from argv."""
    drive(sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]))


@pytest.mark.parametrize("killed_in", ["question", "answer"])
def test_sigkill_while_a_batch_is_in_progress_then_resume_collects_the_same_batch(server, tmp_path, killed_in):
    rows = 20
    server.set_batch_settings(processing_s=1.5)
    command = [
        sys.executable,
        "-c",
        "from tests.core.test_batch_runner import child_main; child_main()",
        server.base_url,
        str(tmp_path),
        str(rows),
    ]
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        # The batches move on as the child polls them until its killed_in batch exists: that one
        # stays in progress, and the child is killed once it has polled it.
        made = lambda stats: killed_in in [b["metadata"]["dd_column"] for b in stats["batches"]]  # noqa: E731
        with batch_clock_moved_by_polls(server, 0.1, until=made):
            wait_for(lambda: made(server.batch_stats()), 60, f"the {killed_in} batch")
        (held,) = [b["id"] for b in server.batch_stats()["batches"] if b["metadata"]["dd_column"] == killed_in]
        wait_for(
            lambda: polled_in_progress(server.batch_stats(), [held]), 60, f"the child to poll its {killed_in} batch"
        )
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == -signal.SIGKILL
    polls_before = server.batch_stats()["counts"]["poll"]
    with batch_clock_moved_by_polls(server, 0.1):
        out = drive(server.base_url, tmp_path, rows)
    stats = server.batch_stats()
    assert batches_by_column(server) == [("question", rows), ("answer", rows)], "exactly one batch per column"
    assert_no_request_in_two_batches(server)
    assert stats["counts"]["poll"] > polls_before, "the resumed run polled the batch the killed run made"
    assert server.stats()["requests_total"] == 0
    assert out["rows"] == online_rows(server.base_url, rows)
    assert BatchJournal.open(journal_path(storage_path(tmp_path), 0)).pending() == []


def test_a_batch_created_but_not_journaled_is_found_not_made_again(server, tmp_path):
    """The crash window between creating a batch and journaling its id."""
    first = drive(server.base_url, tmp_path / "reference", 6)
    server.reset_batches()

    async def submit_without_journaling_the_id():
        journal = BatchJournal.open(journal_path(storage_path(tmp_path), 0))
        bodies = {}
        for r in range(6):
            payload = serialise(cell_body("question", r, {}))
            bodies[hashlib.sha256(payload).hexdigest()] = payload
        async with aiohttp.ClientSession() as session:
            client = BatchClient(
                session,
                server.base_url,
                bearer(None),
                timeouts=Timeouts(30, 30, 30),
                model=ModelConfig(alias="writer", model="test-model", max_retries=0),
            )
            file_id = await client.upload(request_line(k, p) for k, p in bodies.items())
            journal.submit(alias="writer", column="question", attempt=0, input_file_id=file_id, keys=list(bodies))
            await client.create(file_id, completion_window="24h", metadata={})
        journal.close()  # ...and the process dies before journaling "created"

    asyncio.run(submit_without_journaling_the_id())
    out = drive(server.base_url, tmp_path, 6)
    assert [n for _, n in batches_by_column(server)] == [6, 6], "the question batch was found, not made again"
    assert out["rows"] == first["rows"]


def test_a_submission_that_was_never_created_is_sent_in_a_new_batch(server, tmp_path):
    journal = BatchJournal.open(journal_path(storage_path(tmp_path), 0))
    keys = [hashlib.sha256(serialise(cell_body("question", r, {}))).hexdigest() for r in range(4)]
    journal.submit(alias="writer", column="question", attempt=0, input_file_id="file-uploaded-then-crashed", keys=keys)
    journal.close()
    out = drive(server.base_url, tmp_path, 4)
    assert batches_by_column(server) == [("question", 4), ("answer", 4)]
    assert all(out["rows"])
    records = [json.loads(line) for line in (tmp_path / "rg_00000.batches.jsonl").read_text().splitlines()]
    assert records[1]["op"] == "collected", "the never-created submission is closed, nothing to collect"


def test_a_batch_whose_results_could_not_be_stored_stays_pending_and_is_downloaded_again(server, tmp_path, monkeypatch):
    """The journal says "collected" only once the results are in the cache: when storing fails
    (a full disk), the next run downloads the same batch again and submits nothing."""

    async def disk_full(self):
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(RowGroupCache, "persist", disk_full)
        with pytest.raises(OSError):
            drive(server.base_url, tmp_path, 5)
    pending = BatchJournal.open(journal_path(storage_path(tmp_path), 0)).pending()
    assert [s.column for s in pending] == ["question"] and pending[0].batch_id
    downloads = server.batch_stats()["counts"]["content"]
    out = drive(server.base_url, tmp_path, 5)
    assert batches_by_column(server) == [("question", 5), ("answer", 5)]
    assert server.batch_stats()["counts"]["content"] == downloads + 2
    assert all(out["rows"])
