"""The batch journal: each record is on disk before the step it announces, and replays after a crash."""

from __future__ import annotations

import json

from dd_core.engine.llm.batch_journal import BatchJournal, journal_path
from dd_core.storage.filesystems import storage_path


def records(path) -> list[dict]:
    return [json.loads(line) for line in path.local.read_text().splitlines()]


def test_every_record_is_written_before_the_call_returns(tmp_path):
    path = journal_path(storage_path(tmp_path), 7)
    assert path.name == "rg_00007.batches.jsonl"
    journal = BatchJournal.open(path)
    submission = journal.submit(alias="writer", column="answer", attempt=0, input_file_id="file-1", keys=["k1", "k2"])
    assert [r["op"] for r in records(path)] == ["submit"] and records(path)[0]["keys"] == ["k1", "k2"]
    journal.created(submission, "batch_1")
    assert records(path)[-1] == {"op": "created", "nonce": submission.nonce, "batch_id": "batch_1"}
    assert journal.awaiting() == {"k1": submission, "k2": submission}
    journal.collected(submission)
    assert records(path)[-1]["op"] == "collected" and journal.pending() == []
    journal.close()


def test_replay_after_a_crash_knows_what_is_pending(tmp_path):
    path = journal_path(storage_path(tmp_path), 0)
    journal = BatchJournal.open(path)
    done = journal.submit(alias="writer", column="question", attempt=0, input_file_id="file-a", keys=["a"])
    journal.created(done, "batch_a")
    journal.collected(done)
    running = journal.submit(alias="writer", column="answer", attempt=0, input_file_id="file-b", keys=["b1", "b2"])
    journal.created(running, "batch_b")
    uncreated = journal.submit(alias="judge", column="verdict", attempt=1, input_file_id="file-c", keys=["c"])
    # a crash: no close, and the last write cut short
    with path.local.open("ab") as fh:
        fh.write(b'{"op":"created","nonce":"' + uncreated.nonce.encode()[:5])
    replayed = BatchJournal.open(path)
    pending = replayed.pending()
    assert [(s.batch_id, s.column, s.keys) for s in pending] == [
        ("batch_b", "answer", ("b1", "b2")),
        (None, "verdict", ("c",)),
    ]
    assert pending[1].alias == "judge" and pending[1].attempt == 1 and pending[1].input_file_id == "file-c"
    assert set(replayed.awaiting()) == {"b1", "b2", "c"}
    assert "not yet created" in pending[1].label and "batch_b" in pending[0].label


def test_without_a_folder_the_journal_lives_in_memory(tmp_path):
    journal = BatchJournal.open(None)
    submission = journal.submit(alias="w", column="c", attempt=0, input_file_id="f", keys=["k"])
    journal.created(submission, "b")
    assert journal.pending() == [submission]
    assert list(tmp_path.iterdir()) == []


def test_a_journal_on_object_storage_is_uploaded_at_every_record(s3_bucket):
    path = journal_path(storage_path(f"{s3_bucket}/ds/llm-cache"), 3)
    journal = BatchJournal.open(path)
    submission = journal.submit(alias="w", column="c", attempt=0, input_file_id="f", keys=["k"])
    assert [s.nonce for s in BatchJournal.open(path).pending()] == [submission.nonce]
    journal.created(submission, "batch_s3")
    assert BatchJournal.open(path).pending()[0].batch_id == "batch_s3"
