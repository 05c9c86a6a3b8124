"""When ``metadata.json`` records finished row groups, and that every row group it lists is
durably in place: the parquet folder is fsynced before each record, once per record rather than
once per file.

The record policy runs on a clock the test moves; the order of fsyncs, renames and records is
observed by wrapping the real calls (durability itself cannot be observed without pulling the
power)."""

from __future__ import annotations

import json
import os
import threading

import pyarrow as pa
import pytest

from dd_core import generate, load_config
from dd_core.fingerprinting import fingerprint
from dd_core.storage import atomic, local_disk
from dd_core.storage.dataset_folder import DatasetWriter
from dd_core.storage.layout import DatasetLayout, batch_index
from dd_core.storage.metadata import DatasetMetadata, load_metadata
from dd_core.storage.row_group_files import RowGroupIdentity, write_row_group_file
from tests.support import EXAMPLES, run_dd

CUSTOMERS = EXAMPLES / "customers.yaml"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _writer(tmp_path, clock: Clock, interval: float, num_records: int = 1000) -> tuple[DatasetWriter, RowGroupIdentity]:
    fp = fingerprint(load_config(CUSTOMERS))
    meta = DatasetMetadata("ds", fp.config_hash, fp.config_hash_algo, fp.config_hash_version, 42, num_records, 100)
    writer = DatasetWriter(DatasetLayout(tmp_path / "ds"), meta, interval, clock)
    writer.start({"name": "ds"}, {})
    return writer, RowGroupIdentity(fp.config_hash, fp.config_hash_version, 100, 42)


def _finish_row_group(writer: DatasetWriter, identity: RowGroupIdentity, index: int, rows: int = 100, **record):
    info = identity.info(index, rows, rows)
    table = pa.table({"x": list(range(rows))})
    write_row_group_file(writer.layout.batch(index), table, info, sync_folder=False, digest=False)
    writer.record_row_group(info, **record)


def _saved(writer: DatasetWriter) -> list[int]:
    return sorted(load_metadata(writer.layout.metadata).completed)


def test_records_are_saved_at_most_once_per_interval_and_all_at_the_end(tmp_path):
    clock = Clock()
    writer, identity = _writer(tmp_path, clock, interval=1.0)
    _finish_row_group(writer, identity, 0)
    _finish_row_group(writer, identity, 1)
    assert _saved(writer) == []  # both files in place, not recorded yet
    clock.now += 1.0
    _finish_row_group(writer, identity, 2)
    assert _saved(writer) == [0, 1, 2]  # due: everything counted so far
    clock.now += 0.5
    _finish_row_group(writer, identity, 3)
    assert _saved(writer) == [0, 1, 2]
    _finish_row_group(writer, identity, 4, with_usage=True)  # this run's LLM usage is in no file: at once
    assert _saved(writer) == [0, 1, 2, 3, 4]
    _finish_row_group(writer, identity, 5)
    writer.finish("parquet-files")
    saved = load_metadata(writer.layout.metadata)
    assert sorted(saved.completed) == list(range(6)) and saved.status == "complete"


def test_a_replaced_partial_row_group_is_recorded_at_once(tmp_path):
    """Only files the metadata does not list are adopted by the next run, so the completion of
    a partial row group recorded before is saved at once."""
    clock = Clock()
    writer, identity = _writer(tmp_path, clock, interval=float("inf"))
    _finish_row_group(writer, identity, 0, rows=40)
    assert _saved(writer) == []
    writer.settle_after_stop()  # as after a stop: the partial row group is recorded
    assert load_metadata(writer.layout.metadata).completed[0].requested == 40
    _finish_row_group(writer, identity, 0, rows=100)
    assert load_metadata(writer.layout.metadata).completed[0].requested == 100


def test_interval_zero_records_every_row_group(tmp_path):
    writer, identity = _writer(tmp_path, Clock(), interval=0.0)
    for index in range(3):
        _finish_row_group(writer, identity, index)
        assert _saved(writer) == list(range(index + 1))


@pytest.mark.parametrize("value", ["abc", "-1", "nan", ""])
def test_a_bad_record_interval_is_one_usage_error(tmp_path, value):
    run = run_dd("generate", CUSTOMERS, "-n", 100, "--artifact-path", tmp_path, env={"DD_RECORD_SECONDS": value})
    assert run.returncode == 2, run.stderr
    assert "DD_RECORD_SECONDS" in run.stderr and "Traceback" not in run.stderr
    assert not list(tmp_path.iterdir()), "nothing is written"


class Recorder:
    """Wraps the real folder fsyncs and metadata saves; each event notes what the parquet
    folder held at that moment."""

    def __init__(self, monkeypatch, parquet_dir) -> None:
        self.parquet_dir = parquet_dir
        self.events: list[tuple[str, set[int]]] = []
        self.lock = threading.Lock()
        real_fsync_dir, real_save = atomic.fsync_dir, DatasetMetadata.save

        def fsync_dir(folder) -> None:
            real_fsync_dir(folder)
            if os.path.abspath(folder) == str(parquet_dir):
                self._note("parquet folder synced", self._files())

        def save(meta, path, **kwargs) -> None:
            real_save(meta, path, **kwargs)
            self._note("metadata saved", set(meta.completed))

        monkeypatch.setattr(atomic, "fsync_dir", fsync_dir)
        monkeypatch.setattr(local_disk, "fsync_dir", fsync_dir)
        monkeypatch.setattr(DatasetMetadata, "save", save)

    def _files(self) -> set[int]:
        names = os.listdir(self.parquet_dir) if self.parquet_dir.exists() else []
        return {i for i in map(batch_index, names) if i is not None}

    def _note(self, what: str, indices: set[int]) -> None:
        with self.lock:
            self.events.append((what, indices))


@pytest.mark.parametrize("seconds", ["0", "1", "inf"])
def test_every_recorded_row_group_was_in_place_when_its_folder_was_synced(tmp_path, monkeypatch, seconds):
    monkeypatch.setenv("DD_RECORD_SECONDS", seconds)
    recorder = Recorder(monkeypatch, tmp_path / "customers" / "parquet-files")
    result = generate(CUSTOMERS, 3500, buffer_size=500, artifact_path=tmp_path, workers=1)
    assert result.metadata["status"] == "complete" and result.metadata["num_completed_row_groups"] == 7
    synced: set[int] = set()
    saves = 0
    for what, indices in recorder.events:
        if what == "parquet folder synced":
            synced = indices
        else:
            saves += 1
            assert indices <= synced, f"metadata lists {sorted(indices - synced)} before their names were synced"
    syncs = sum(what == "parquet folder synced" for what, _ in recorder.events)
    assert syncs <= saves, "the parquet folder is synced once per record, not once per file"
    if seconds == "inf":
        assert saves == 2  # the start and the end of the run
    if seconds == "0":
        assert saves == 9  # the start, after each of the 7 row groups, the end
    assert json.loads((tmp_path / "customers" / "metadata.json").read_text())["status"] == "complete"
