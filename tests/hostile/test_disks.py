"""A real full disk (ENOSPC on a small tmpfs) and real read-only folders (a read-only bind
mount): one clear message with exit 6, no half-written file left, finished files untouched."""

from __future__ import annotations

import json

from dd_core import generate, load_dataset
from dd_core.storage.row_group_files import read_info
from tests.hostile.conftest import CUSTOMERS
from tests.hostile.harness import check, invoke, snapshot


def _leftovers(folder):
    return [p for p in folder.rglob("*") if ".tmp-" in p.name]


def test_generate_on_a_full_disk(full_disk):
    outcome = invoke(
        "generate", CUSTOMERS, "-n", 6000, "--buffer-size", 300, "--artifact-path", full_disk, "--dataset-name", "ds"
    )
    check(outcome, 6, "could not write", "free some space", "Nothing half-written was left")
    folder = full_disk / "ds"
    assert not _leftovers(folder)
    meta = json.loads((folder / "metadata.json").read_text())
    assert 0 < meta["num_completed_row_groups"] < 20
    recorded = [
        i for start, end in meta["completed_row_groups"] for i in range(start, end + 1)
    ]  # pipelined: not always a prefix
    assert len(recorded) == meta["num_completed_row_groups"]
    for index in recorded:  # every recorded row group is whole
        info = read_info(folder / "parquet-files" / f"batch_{index:05d}.parquet")
        assert (info.row_group, info.num_rows) == (index, 300)
    check(invoke("status", folder), 0, f"{meta['num_completed_row_groups']} of 20 finished", "ddsynth resume")


def test_export_onto_a_full_disk(made, full_disk):
    check(invoke("export", made["done"], "--format", "csv", "-o", full_disk / "out.csv"), 0)
    big = generate(
        CUSTOMERS, 3000, buffer_size=1000, artifact_path=made["done"].parent.parent / "big-for-disk", dataset_name="b"
    ).path
    outcome = invoke("export", big, "-o", full_disk / "big.jsonl")
    check(outcome, 6, "could not write", "big.jsonl", "free some space")
    assert not (full_disk / "big.jsonl").exists() and not _leftovers(full_disk)


def test_resume_in_a_read_only_folder(partial, read_only):
    read_only(partial)
    before = snapshot(partial)
    check(invoke("resume", partial), 6, "Read-only file system", "use a writable folder")
    assert snapshot(partial) == before


def test_a_read_only_dataset_can_still_be_read(done, read_only, tmp_path):
    read_only(done)
    before = snapshot(done)
    check(invoke("status", done), 0, "3 of 3 finished")
    check(invoke("export", done, "-o", tmp_path / "out.jsonl"), 0, "Wrote 600 records")
    check(invoke("resume", done), 0, "already complete")
    assert snapshot(done) == before
    assert len(load_dataset(done)) == 600


def test_export_into_a_read_only_folder(done, read_only, tmp_path):
    target = tmp_path / "locked"
    target.mkdir()
    read_only(target)
    check(invoke("export", done, "-o", target / "out.jsonl"), 6, "could not write", "Read-only file system")
    assert not list(target.iterdir())


def test_a_new_dataset_in_a_read_only_artifact_folder(tmp_path, read_only):
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    read_only(artifacts)
    check(
        invoke("generate", CUSTOMERS, "-n", 100, "--artifact-path", artifacts, "--dataset-name", "ds"),
        6,
        "could not create",
        "Read-only file system",
    )
    assert not list(artifacts.iterdir())
