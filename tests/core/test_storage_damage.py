"""Damage is reported, never repaired over finished data; crash leftovers are reconciled."""

from __future__ import annotations

import hashlib
import json
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dd_core import DatasetDamagedError, generate, load_config
from dd_core.storage.layout import DatasetLayout
from dd_core.storage.metadata import load_metadata
from tests.support import EXAMPLES, run_dd

CUSTOMERS = EXAMPLES / "customers.yaml"


class Stop(Exception):
    pass


def _partial(tmp_path, done: int = 2):
    def progress(n, total):
        if n == done:
            raise Stop

    with pytest.raises(Stop):
        generate(CUSTOMERS, 4000, buffer_size=1000, artifact_path=tmp_path, dataset_name="ds", progress=progress)
    return DatasetLayout(tmp_path / "ds")


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_truncated_row_group_is_reported_and_kept(tmp_path):
    layout = _partial(tmp_path)
    victim = layout.batch(1).local
    victim.write_bytes(victim.read_bytes()[:300])
    damaged = _digest(victim)
    with pytest.raises(DatasetDamagedError, match="batch_00001.parquet is unreadable"):
        generate(CUSTOMERS, 4000, buffer_size=1000, artifact_path=tmp_path, dataset_name="ds")
    assert victim.exists() and _digest(victim) == damaged
    assert load_metadata(layout.metadata).status == "in_progress"
    run = run_dd("generate", CUSTOMERS, "-n", 4000, "--artifact-path", tmp_path, "--dataset-name", "ds")
    assert run.returncode == 4 and "Traceback" not in run.stderr


def test_row_group_from_another_config_is_reported(tmp_path):
    layout = _partial(tmp_path)
    other = generate(
        load_config(CUSTOMERS).model_copy(update={"seed": 9}),
        2000,
        buffer_size=1000,
        artifact_path=tmp_path,
        dataset_name="other",
    )
    shutil.copy(other.path / "parquet-files" / "batch_00001.parquet", layout.batch(1).local)
    with pytest.raises(
        DatasetDamagedError,
        match=r"row group 1 \(1000 rows requested\) of config sha256:.*expects row group 1 of config",
    ):
        generate(CUSTOMERS, 4000, buffer_size=1000, artifact_path=tmp_path, dataset_name="ds")


def test_unrecorded_file_with_another_index_is_reported(tmp_path):
    layout = _partial(tmp_path)
    shutil.copy(layout.batch(0).local, layout.batch(3).local)  # a file claiming to be row group 0, named 3
    with pytest.raises(DatasetDamagedError, match="says it is row group 0 .* expects row group 3"):
        generate(CUSTOMERS, 4000, buffer_size=1000, artifact_path=tmp_path, dataset_name="ds")
    assert layout.batch(3).local.exists()


def test_corrupt_metadata_is_reported_and_nothing_changes(tmp_path):
    layout = _partial(tmp_path)
    layout.metadata.local.write_text('{"format_version": 1, "dataset_na')
    files = {p.name: _digest(p) for p in layout.parquet_dir.local.iterdir()}
    with pytest.raises(DatasetDamagedError, match="metadata.json is unreadable or not JSON"):
        generate(CUSTOMERS, 4000, buffer_size=1000, artifact_path=tmp_path, dataset_name="ds")
    assert {p.name: _digest(p) for p in layout.parquet_dir.local.iterdir()} == files
    run = run_dd("status", layout.root)
    assert run.returncode == 4 and "not JSON" in run.stderr


def test_metadata_naming_a_missing_file_is_reported(tmp_path):
    layout = _partial(tmp_path)
    layout.batch(0).local.unlink()
    with pytest.raises(DatasetDamagedError, match=r"lists row groups \[0\] as finished, but their files are missing"):
        generate(CUSTOMERS, 4000, buffer_size=1000, artifact_path=tmp_path, dataset_name="ds")


def test_file_written_but_not_recorded_is_adopted_not_regenerated(tmp_path, caplog):
    layout = _partial(tmp_path)
    meta = json.loads(layout.metadata.local.read_text())
    meta["completed_row_groups"] = [[0, 0]]  # as if the process died right after renaming batch 1
    layout.metadata.local.write_text(json.dumps(meta))
    adopted = _digest(layout.batch(1).local)
    caplog.set_level("INFO", logger="dd_core")
    result = generate(CUSTOMERS, 4000, buffer_size=1000, artifact_path=tmp_path, dataset_name="ds")
    assert result.generated_row_groups == 2
    assert _digest(layout.batch(1).local) == adopted
    assert "row group 1 was written but not recorded" in caplog.text


def test_temporary_leftovers_are_removed_before_resuming(tmp_path):
    layout = _partial(tmp_path)
    leftover = layout.parquet_dir.local / ".batch_00002.parquet.tmp-99999"
    leftover.write_bytes(b"half a file")
    (layout.root.local / ".metadata.json.tmp-99999").write_text("{")
    result = generate(CUSTOMERS, 4000, buffer_size=1000, artifact_path=tmp_path, dataset_name="ds")
    assert not leftover.exists() and not (layout.root.local / ".metadata.json.tmp-99999").exists()
    assert len(result.load()) == 4000


def test_foreign_parquet_files_are_not_counted_as_row_groups(tmp_path):
    layout = _partial(tmp_path)
    pq.write_table(pa.table({"x": [1]}), layout.parquet_dir.local / "notes.parquet")
    result = generate(CUSTOMERS, 4000, buffer_size=1000, artifact_path=tmp_path, dataset_name="ds")
    assert result.metadata["num_completed_row_groups"] == 4
    assert (layout.parquet_dir.local / "notes.parquet").exists()
