"""A row group's materialization is reported only once its file is durably in place: its
folder was fsynced after the file got its name, also when the file was found finished after
its producer died (a reused file no run reported). Observed by wrapping the real fsyncs and
the report (durability itself cannot be observed without pulling the power)."""

from __future__ import annotations

import os
from pathlib import Path

from dd_core.storage import atomic, local_disk
from dd_dagster import DataDesignerResource, build_dataset_definitions
from dd_dagster.row_groups import RowGroupMaterializer
from tests.dagster.helpers import outcome, run_range, tiny_config


def test_each_row_group_is_reported_after_its_folder_is_synced(tmp_path, tiny_registered, monkeypatch):
    events: list[tuple[str, Path, set[str]]] = []
    real_fsync_dir, real_report = atomic.fsync_dir, RowGroupMaterializer._materialization

    def fsync_dir(folder) -> None:
        real_fsync_dir(folder)
        events.append(("synced", Path(folder), set(os.listdir(folder))))

    def report(self, row_group):  # noqa: ANN001, ANN202
        events.append(("reported", Path(str(row_group.path)), set()))
        return real_report(self, row_group)

    monkeypatch.setattr(atomic, "fsync_dir", fsync_dir)
    monkeypatch.setattr(local_disk, "fsync_dir", fsync_dir)
    monkeypatch.setattr(RowGroupMaterializer, "_materialization", report)
    # Produced in the run's process, where the fsyncs are observed (a worker process writes alike).
    resource = DataDesignerResource(artifact_path=str(tmp_path), generation_worker=False)
    defs = build_dataset_definitions(tiny_config(), num_records=200, buffer_size=50, resource=resource)
    # The first run dies right after row group 2's file is renamed into place, before reporting it.
    monkeypatch.setenv("DD_FAULT_POINT", "parquet_renamed")
    monkeypatch.setenv("DD_FAULT_HIT", "3")
    monkeypatch.setenv("DD_FAULT_ACTION", "raise")
    assert not run_range(defs, tiny_registered, 0, 3, raise_on_error=False).success
    monkeypatch.delenv("DD_FAULT_POINT")
    retry = run_range(defs, tiny_registered, 0, 3)
    assert outcome(retry)[2] == "reused" and outcome(retry)[3] == "generated"
    reported = [path for what, path, _ in events if what == "reported"]
    assert {p.name for p in reported} >= {f"batch_{i:05d}.parquet" for i in (2, 3)}
    for position, (what, path, _) in enumerate(events):
        if what == "reported":
            synced_before = [names for w, folder, names in events[:position] if w == "synced" and folder == path.parent]
            assert any(path.name in names for names in synced_before), f"{path} was reported before its name was synced"
