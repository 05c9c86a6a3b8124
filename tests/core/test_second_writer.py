"""A second writer is told "locked" (exit 5), never "damaged", while the first writer finishes
a row group between the second one's reads of the folder (its listing of row-group files and
its reading of metadata.json), on every backend.

The interleaving is decided by the test: the first writer waits at a fault point just before
row group k's file appears; the second writer, after its first read of the folder, opens the
gate and waits until the first has recorded row group k, then makes its second read. The first
writer then holds (still holding the lock) at the next row group until the test kills it, so it
cannot finish and release the lock before the second writer asks for it.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.support import EXAMPLES, ROOT, run_dd

CUSTOMERS = EXAMPLES / "customers.yaml"


def _first_writer(root: str, name: str, row_group: int, gate) -> subprocess.Popen:
    env = {
        **os.environ,
        "DD_FAULT_POINT": "parquet_tmp_written",
        "DD_FAULT_HIT": str(row_group + 1),
        "DD_FAULT_ACTION": "wait-then-pause",
        "DD_FAULT_GATE": str(gate),
        "DD_RECORD_SECONDS": "0",  # metadata.json records each row group as it finishes: the second writer waits for it
    }
    command = [sys.executable, "-m", "dd_core", "generate", str(CUSTOMERS), "-n", "3000", "--buffer-size", "500"]
    command += ["--artifact-path", root, "--dataset-name", name, "--workers", "1"]
    first = subprocess.Popen(command, cwd=ROOT, env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    line = first.stderr.readline()  # blocks until the fault point is reached (or the process ends)
    assert "fault point parquet_tmp_written reached" in line, line + first.stderr.read()
    return first


@pytest.mark.parametrize("storage_root", ["local", "s3", "gs", "az"], indirect=True)
def test_second_writer_is_told_locked_while_a_row_group_finishes(storage_root, tmp_path):
    for row_group in (1, 2, 4):  # several rounds, each a new folder and another row group
        name = f"customers{row_group}"
        gate = tmp_path / f"gate{row_group}"
        first = _first_writer(storage_root, name, row_group, gate)
        try:
            second = subprocess.run(
                [
                    sys.executable,
                    str(ROOT / "tests" / "core" / "second_writer.py"),
                    str(gate),
                    f"{storage_root}/{name}/metadata.json",
                    str(row_group + 1),
                    "generate",
                    str(CUSTOMERS),
                    "-n",
                    "3000",
                    "--buffer-size",
                    "500",
                    "--artifact-path",
                    storage_root,
                    "--dataset-name",
                    name,
                ],
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=180,
            )
            assert gate.exists(), second.stderr  # the interleaving happened
            assert second.returncode == 5, second.stderr
            assert "is being written by another process" in second.stderr
            assert "missing" not in second.stderr and "damaged" not in second.stderr
        finally:
            first.kill()
            first.wait()
            first.stderr.close()
    # The killed first writer's work resumes (its lock or lease is given up with it).
    resumed = run_dd(
        "generate",
        CUSTOMERS,
        "-n",
        "3000",
        "--buffer-size",
        "500",
        "--artifact-path",
        storage_root,
        "--dataset-name",
        "customers4",
        timeout=180,
    )
    assert resumed.returncode == 0, resumed.stderr
