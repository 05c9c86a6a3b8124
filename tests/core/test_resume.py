"""The resume matrix (README, Resuming), through the Python API and the CLI, plus its side rules."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dd_core import DDConfigError, ResumeConflictError, ResumeMode, generate, load_config
from dd_core.storage.layout import DatasetLayout
from dd_core.storage.lock import dataset_lock
from tests.support import EXAMPLES, ROOT, run_dd

CUSTOMERS = EXAMPLES / "customers.yaml"
ORDERS = EXAMPLES / "orders_from_seed.yaml"
NAME = "ds"


class Interrupted(Exception):
    pass


def _interrupt_after(n: int):
    def progress(done: int, total: int) -> None:
        if done == n:
            raise Interrupted  # like Ctrl-C between two row groups

    return progress


def snapshot(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.name.startswith(".dd.lock")
    }


def make_state(state: str, artifacts: Path) -> Path:
    """Leave a dataset folder in one of the four states of the matrix; return its path."""
    folder = artifacts / NAME
    if state == "nothing":
        return folder
    if state == "same":
        with pytest.raises(Interrupted):
            generate(
                CUSTOMERS,
                4000,
                buffer_size=1000,
                artifact_path=artifacts,
                dataset_name=NAME,
                progress=_interrupt_after(2),
            )
    elif state == "other":
        other = load_config(CUSTOMERS).model_copy(update={"seed": 1})
        generate(other, 4000, buffer_size=1000, artifact_path=artifacts, dataset_name=NAME)
    elif state == "no_metadata":
        generate(CUSTOMERS, 4000, buffer_size=1000, artifact_path=artifacts, dataset_name=NAME)
        (folder / "metadata.json").unlink()
    return folder


# (state, mode) -> "create" | "resume" | "new_folder" | "error"
MATRIX = {
    ("nothing", "never"): "create",
    ("nothing", "always"): "error",
    ("nothing", "if_possible"): "create",
    ("same", "never"): "new_folder",
    ("same", "always"): "resume",
    ("same", "if_possible"): "resume",
    ("other", "never"): "new_folder",
    ("other", "always"): "error",
    ("other", "if_possible"): "error",
    ("no_metadata", "never"): "new_folder",
    ("no_metadata", "always"): "error",
    ("no_metadata", "if_possible"): "error",
}
CELLS = sorted(MATRIX)


def _check_outcome(
    expected: str, artifacts: Path, folder: Path, before: dict, result_path: Path | None, generated: int | None
):
    if expected == "error":
        assert result_path is None
        assert (snapshot(folder) if folder.exists() else {}) == before
        assert sorted(p.name for p in artifacts.iterdir()) == ([NAME] if before else [])
        return
    assert result_path is not None
    frame = pd_load(result_path)
    assert len(frame) == 4000
    if expected == "create":
        assert result_path == folder and generated == 4
    elif expected == "resume":
        assert result_path == folder and generated == 2  # only the two unfinished row groups
    elif expected == "new_folder":
        assert result_path.parent == artifacts and result_path.name.startswith(f"{NAME}_") and generated == 4
        assert snapshot(folder) == before  # the old folder is never touched


def pd_load(path: Path):
    from dd_core import load_dataset

    return load_dataset(path)


@pytest.mark.parametrize(("state", "mode"), CELLS, ids=[f"{s}-{m}" for s, m in CELLS])
def test_matrix_through_the_api(tmp_path, state, mode):
    folder = make_state(state, tmp_path)
    before = snapshot(folder) if folder.exists() else {}
    expected = MATRIX[state, mode]
    try:
        result = generate(CUSTOMERS, 4000, buffer_size=1000, artifact_path=tmp_path, dataset_name=NAME, resume=mode)
    except ResumeConflictError as exc:
        assert expected == "error", exc
        assert str(folder) in str(exc) and "found" in str(exc) and "expected" in str(exc)
        _check_outcome(expected, tmp_path, folder, before, None, None)
        return
    _check_outcome(expected, tmp_path, folder, before, result.path, result.generated_row_groups)


@pytest.mark.parametrize(("state", "mode"), CELLS, ids=[f"{s}-{m}" for s, m in CELLS])
def test_matrix_through_the_cli(tmp_path, state, mode):
    folder = make_state(state, tmp_path)
    before = snapshot(folder) if folder.exists() else {}
    expected = MATRIX[state, mode]
    run = run_dd(
        "generate",
        CUSTOMERS,
        "-n",
        4000,
        "--buffer-size",
        1000,
        "--artifact-path",
        tmp_path,
        "--dataset-name",
        NAME,
        "--resume",
        mode,
    )
    if expected == "error":
        assert run.returncode == 3, run.stderr
        assert "Traceback" not in run.stderr and "Cannot resume" in run.stderr
        _check_outcome(expected, tmp_path, folder, before, None, None)
        return
    assert run.returncode == 0, run.stderr
    path = Path(run.stdout.split("Dataset: ")[1].strip())
    generated = int(run.stdout.split("Generated ")[1].split(" ")[0])
    _check_outcome(expected, tmp_path, folder, before, path if path.is_absolute() else path, generated)


def test_mode_strings_coerce_and_bad_ones_list_the_valid_values():
    assert ResumeMode.coerce("if_possible") is ResumeMode.IF_POSSIBLE
    assert ResumeMode.coerce("IF-POSSIBLE") is ResumeMode.IF_POSSIBLE
    assert ResumeMode.coerce(ResumeMode.ALWAYS) is ResumeMode.ALWAYS
    assert ResumeMode("never") is ResumeMode.NEVER and ResumeMode.NEVER == "never"
    with pytest.raises(DDConfigError, match="valid modes: never, always, if_possible"):
        ResumeMode.coerce("sometimes")


def test_buffer_size_mismatch_is_an_error(tmp_path):
    generate(CUSTOMERS, 3000, buffer_size=1000, artifact_path=tmp_path, dataset_name=NAME)
    with pytest.raises(ResumeConflictError, match="buffer_size 1000, expected 500.*--buffer-size 1000"):
        generate(CUSTOMERS, 3000, buffer_size=500, artifact_path=tmp_path, dataset_name=NAME)


def test_shrinking_below_what_is_generated_is_an_error(tmp_path):
    generate(CUSTOMERS, 3000, buffer_size=1000, artifact_path=tmp_path, dataset_name=NAME)
    with pytest.raises(ResumeConflictError, match="found 3000 records already generated.*num_records 2500"):
        generate(CUSTOMERS, 2500, buffer_size=1000, artifact_path=tmp_path, dataset_name=NAME)
    run = run_dd("generate", CUSTOMERS, "-n", 2500, "--artifact-path", tmp_path, "--dataset-name", NAME)
    assert run.returncode == 3 and "Traceback" not in run.stderr


def test_extend_completes_the_partial_row_group_and_equals_an_uninterrupted_run(tmp_path):
    first = generate(CUSTOMERS, 2500, buffer_size=1000, artifact_path=tmp_path / "a", dataset_name=NAME)
    before = first.load()
    extended = generate(CUSTOMERS, 4200, buffer_size=1000, artifact_path=tmp_path / "a", dataset_name=NAME)
    assert extended.generated_row_groups == 3  # row group 2 completed, 3 and 4 new
    straight = generate(CUSTOMERS, 4200, buffer_size=1000, artifact_path=tmp_path / "b", dataset_name=NAME)
    assert extended.load().equals(straight.load())
    assert extended.load().head(2500).equals(before)  # what existed is unchanged
    assert extended.metadata["num_records"] == 4200 and extended.metadata["status"] == "complete"


def test_already_complete_generates_nothing_and_does_not_rerun_processors(tmp_path):
    first = generate(ORDERS, 1000, buffer_size=400, artifact_path=tmp_path, dataset_name=NAME)
    final = first.path / "dataset.parquet"
    stat = final.stat()
    again = generate(ORDERS, 1000, buffer_size=400, artifact_path=tmp_path, dataset_name=NAME)
    assert again.already_complete and again.generated_row_groups == 0
    assert final.stat().st_mtime_ns == stat.st_mtime_ns and final.stat().st_ino == stat.st_ino
    run = run_dd(
        "generate", ORDERS, "-n", 1000, "--buffer-size", 400, "--artifact-path", tmp_path, "--dataset-name", NAME
    )
    assert run.returncode == 0 and "already complete" in run.stdout
    assert final.stat().st_mtime_ns == stat.st_mtime_ns


def test_a_second_writer_fails_at_once_naming_the_holder(tmp_path):
    layout = DatasetLayout(tmp_path / NAME)
    with dataset_lock(layout):
        started = time.monotonic()
        run = run_dd("generate", CUSTOMERS, "-n", 100, "--artifact-path", tmp_path, "--dataset-name", NAME)
        # At once: not after waiting for the holder (a CLI start takes seconds on a busy machine).
        assert time.monotonic() - started < 60
    assert run.returncode == 5, run.stderr
    assert f"pid {os.getpid()}" in run.stderr and "being written by another process" in run.stderr
    assert not (tmp_path / NAME / "metadata.json").exists()


def test_a_lock_left_by_a_killed_process_does_not_block(tmp_path):
    code = (
        "import sys, time; from pathlib import Path; from dd_core.storage.layout import DatasetLayout;"
        "from dd_core.storage.lock import dataset_lock\n"
        f"with dataset_lock(DatasetLayout(Path({str(tmp_path / NAME)!r}))):\n"
        "    print('locked', flush=True); time.sleep(600)"
    )
    holder = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    blocked = run_dd("generate", CUSTOMERS, "-n", 100, "--artifact-path", tmp_path, "--dataset-name", NAME)
    assert blocked.returncode == 5
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    run = run_dd("generate", CUSTOMERS, "-n", 100, "--artifact-path", tmp_path, "--dataset-name", NAME)
    assert run.returncode == 0, run.stderr
