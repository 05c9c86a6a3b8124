"""SIGKILL ``ddsynth generate`` at many points, resume, and get exactly the uninterrupted dataset.

Named points (DD_FAULT_POINT) cover the instants that matter: inside the parquet write,
between the parquet rename and the metadata write, inside the metadata write, at the start
(config) and while writing the processed dataset. The runs killed at a named point choose when
metadata.json is written (DD_RECORD_SECONDS, not the clock): after every row group (0), so
every point of each row group's write is hit in a known order, or only at the start and end of
the run (inf), so row groups finished but not yet recorded are what a crash leaves. Random
external kills, with the default record interval, cover the rest.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

import pyarrow.parquet as pq
import pytest

from dd_core import generate, load_dataset
from dd_core.storage.layout import batch_index
from dd_core.storage.metadata import load_metadata
from tests.support import EXAMPLES, ROOT

CUSTOMERS = EXAMPLES / "customers.yaml"
ORDERS = EXAMPLES / "orders_from_seed.yaml"
RECORDS, BUFFER = 3500, 500  # 7 row groups, the last one partial

# (point, hit): hit counts that point's occurrences in one run. With a record after every row
# group, a row group makes one parquet write and one metadata write; the run's first metadata
# write happens before any row group.
POINTS = [
    ("config_tmp_partial", 1),
    ("metadata_tmp_partial", 1),
    ("parquet_tmp_partial", 1),
    ("parquet_tmp_partial", 4),
    ("parquet_tmp_partial", 7),
    ("parquet_tmp_written", 1),
    ("parquet_tmp_written", 5),
    ("parquet_renamed", 1),
    ("parquet_renamed", 3),
    ("parquet_renamed", 7),
    ("metadata_tmp_partial", 2),
    ("metadata_tmp_partial", 6),
    ("metadata_tmp_written", 3),
    ("metadata_tmp_written", 8),
    ("metadata_renamed", 2),
    ("metadata_renamed", 5),
    ("metadata_renamed", 9),
]
# Recorded only at the start (metadata hit 1) and the end (hit 2): killed mid-run, every
# finished row group is a file the metadata does not list yet.
DEFERRED_POINTS = [
    ("parquet_tmp_partial", 4),
    ("parquet_tmp_written", 2),
    ("parquet_renamed", 1),
    ("parquet_renamed", 5),
    ("parquet_renamed", 7),
    ("metadata_tmp_partial", 2),
    ("metadata_tmp_written", 2),
    ("metadata_renamed", 2),
]
PROCESSOR_POINTS = [("final_partial", 1), ("final_partial", 3)]
EVERY_ROW_GROUP, START_AND_END = "0", "inf"  # DD_RECORD_SECONDS


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    root = tmp_path_factory.mktemp("reference")
    return {
        CUSTOMERS: generate(CUSTOMERS, RECORDS, buffer_size=BUFFER, artifact_path=root).load(),
        ORDERS: generate(ORDERS, RECORDS, buffer_size=BUFFER, artifact_path=root).load(),
    }


def _command(config, artifacts, workers=1):
    """Named points count their hits in one process: the writer's, with one worker."""
    return [
        sys.executable,
        "-m",
        "dd_core",
        "generate",
        str(config),
        "-n",
        str(RECORDS),
        "--buffer-size",
        str(BUFFER),
        "--artifact-path",
        str(artifacts),
        "--workers",
        str(workers),
    ]


def _killed_run(config, artifacts, point, hit, record_seconds=EVERY_ROW_GROUP):
    env = {**os.environ, "DD_FAULT_POINT": point, "DD_FAULT_HIT": str(hit), "DD_RECORD_SECONDS": record_seconds}
    run = subprocess.run(_command(config, artifacts), cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == -signal.SIGKILL, (point, hit, run.stderr)
    assert f"fault point {point} reached" in run.stderr


def _batch_files(folder) -> dict[int, os.stat_result]:
    """Row group -> its file's stat (a file made again is a new inode)."""
    if not folder.exists():
        return {}
    return {batch_index(p.name): p.stat() for p in folder.iterdir() if batch_index(p.name) is not None}


def _resume_and_check(config, artifacts, mode, expected):
    name = "customers" if config == CUSTOMERS else "orders"
    if mode == "always" and not (artifacts / name / "metadata.json").exists():
        mode = "if_possible"  # died before the first metadata write: nothing to resume yet
    left = _batch_files(artifacts / name / "parquet-files")
    result = generate(config, RECORDS, buffer_size=BUFFER, artifact_path=artifacts, resume=mode)
    if not result.already_complete:
        assert result.generated_row_groups == 7 - len(left), "a row group finished before the crash was made again"
    kept = _batch_files(result.path / "parquet-files")
    assert all(kept[i].st_ino == left[i].st_ino for i in left), "a file finished before the crash was rewritten"
    assert result.path == artifacts / name
    files = sorted(
        batch_index(p.name) for p in (result.path / "parquet-files").iterdir() if batch_index(p.name) is not None
    )
    assert files == list(range(7)), "a row group is missing or duplicated"
    assert not [p for p in result.path.rglob(".*tmp-*")], "temporary files left behind"
    meta = load_metadata(result.path / "metadata.json")
    assert meta.status == "complete" and sorted(meta.completed) == list(range(7)) and meta.actual_num_records == RECORDS
    for index in range(7):
        kv = pq.read_schema(result.path / "parquet-files" / f"batch_{index:05d}.parquet").metadata
        assert kv[b"dd.row_group"] == str(index).encode()
    loaded = load_dataset(result.path)
    assert loaded.equals(expected), "resumed dataset differs from the uninterrupted run"


@pytest.mark.parametrize("mode", ["always", "if_possible"])
@pytest.mark.parametrize(("point", "hit"), POINTS, ids=[f"{p}-{h}" for p, h in POINTS])
def test_kill_at_named_point_then_resume(tmp_path, reference, point, hit, mode):
    _killed_run(CUSTOMERS, tmp_path, point, hit)
    _resume_and_check(CUSTOMERS, tmp_path, mode, reference[CUSTOMERS])


@pytest.mark.parametrize("mode", ["always", "if_possible"])
@pytest.mark.parametrize(("point", "hit"), DEFERRED_POINTS, ids=[f"{p}-{h}" for p, h in DEFERRED_POINTS])
def test_kill_with_row_groups_not_yet_recorded_then_resume(tmp_path, reference, point, hit, mode):
    _killed_run(CUSTOMERS, tmp_path, point, hit, START_AND_END)
    _resume_and_check(CUSTOMERS, tmp_path, mode, reference[CUSTOMERS])


def test_a_row_group_renamed_but_not_recorded_is_adopted_not_made_again(tmp_path, reference):
    """The crash between a row group's rename and its record: the next run records the files
    it finds (each checked to be that row group of this config) and makes only the rest."""
    _killed_run(CUSTOMERS, tmp_path, "parquet_renamed", 5, START_AND_END)
    folder = tmp_path / "customers"
    assert sorted(load_metadata(folder / "metadata.json").completed) == []  # none of the five recorded
    left = _batch_files(folder / "parquet-files")
    assert sorted(left) == [0, 1, 2, 3, 4]
    result = generate(CUSTOMERS, RECORDS, buffer_size=BUFFER, artifact_path=tmp_path, resume="always")
    assert result.generated_row_groups == 2
    kept = _batch_files(folder / "parquet-files")
    assert [(kept[i].st_ino, kept[i].st_mtime_ns) for i in left] == [(s.st_ino, s.st_mtime_ns) for s in left.values()]
    assert load_dataset(result.path).equals(reference[CUSTOMERS])


@pytest.mark.parametrize(("point", "hit"), PROCESSOR_POINTS, ids=[f"{p}-{h}" for p, h in PROCESSOR_POINTS])
def test_kill_while_writing_the_processed_dataset(tmp_path, reference, point, hit):
    _killed_run(ORDERS, tmp_path, point, hit)
    _resume_and_check(ORDERS, tmp_path, "always", reference[ORDERS])


KILL_RECORDS, KILL_BUFFER = 20_000, 500  # 40 row groups: room to land a kill mid-generation


@pytest.fixture(scope="module")
def kill_reference(tmp_path_factory):
    return generate(
        CUSTOMERS, KILL_RECORDS, buffer_size=KILL_BUFFER, artifact_path=tmp_path_factory.mktemp("kill_reference")
    ).load()


def _finished(folder) -> int:
    """Row groups finished (files in place, recorded or not yet)."""
    return len(_batch_files(folder / "parquet-files"))


@pytest.mark.parametrize("seed", range(4))
def test_kill_at_a_random_instant_repeatedly(tmp_path, kill_reference, seed):
    """An outside SIGKILL of the parent at random moments during generation (after a random
    number of finished row groups, plus a random delay), several times in a row, while two
    worker processes write row groups (they die with it), then one clean resume. Metadata is
    recorded at the default interval, so a kill may land before or after any record."""
    rng = random.Random(seed)
    command = [
        sys.executable,
        "-m",
        "dd_core",
        "generate",
        str(CUSTOMERS),
        "-n",
        str(KILL_RECORDS),
        "--buffer-size",
        str(KILL_BUFFER),
        "--artifact-path",
        str(tmp_path),
        "--workers",
        "2",
    ]
    folder = tmp_path / "customers"
    killed_mid_run = 0
    for _ in range(3):
        target = _finished(folder) + rng.randint(1, 8)
        proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while proc.poll() is None and _finished(folder) < target and time.monotonic() < deadline:
            time.sleep(0.005)
        time.sleep(rng.uniform(0, 0.05))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            killed_mid_run += 1
        proc.wait()
    assert killed_mid_run >= 2, "the kills should land while generating"
    result = generate(CUSTOMERS, KILL_RECORDS, buffer_size=KILL_BUFFER, artifact_path=tmp_path, resume="if_possible")
    assert result.num_records == KILL_RECORDS and not [p for p in result.path.rglob(".*tmp-*")]
    assert load_dataset(result.path).equals(kill_reference), "resumed dataset differs from the uninterrupted run"
