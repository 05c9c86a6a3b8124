"""Ctrl-C and SIGTERM sent to a real ``ddsynth`` process: it stops at a safe point, says what is
finished and the exact command that continues, exits 130 / 143, leaves the folder unlocked
and nothing half-written, and the resumed dataset equals an uninterrupted one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dd_core import generate, load_dataset, resume_dataset
from dd_core.testing.llm_server import OpenAIServerProcess
from tests.hostile.conftest import CUSTOMERS, KEY_ENV, llm_config, write_config
from tests.hostile.harness import SECRET, assert_no_secret, assert_no_secret_in_files
from tests.support import ROOT, wait_for

pytestmark = pytest.mark.timeout(300)


def _as_at_a_terminal() -> None:
    """Ctrl-C reaches dd as at a terminal even when the suite itself runs where SIGINT is
    ignored (a background job of a non-interactive shell), which the child would inherit."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _start(*args: object, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "dd_core", *map(str, args)],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_as_at_a_terminal,
    )


def _wait_for(condition, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            raise AssertionError(f"dd ended before the signal (exit {proc.returncode}): {proc.stderr.read()}")
        if time.monotonic() > deadline:
            raise AssertionError("the condition never held")
        time.sleep(0.02)


def _finished(folder: Path) -> int:
    try:
        return json.loads((folder / "metadata.json").read_text())["num_completed_row_groups"]
    except (OSError, ValueError, KeyError):
        return 0


def _files(folder: Path) -> int:
    """Row-group files in place (metadata.json records them at most once a second)."""
    return len(list((folder / "parquet-files").glob("batch_*.parquet")))


@pytest.mark.parametrize(("signum", "code", "name"), [(signal.SIGTERM, 143, "SIGTERM"), (signal.SIGINT, 130, "Ctrl-C")])
def test_signal_while_generating_samplers(tmp_path, signum, code, name):
    folder = tmp_path / "a" / "ds"
    proc = _start(
        "generate",
        CUSTOMERS,
        "-n",
        120_000,
        "--buffer-size",
        1000,
        "--artifact-path",
        tmp_path / "a",
        "--dataset-name",
        "ds",
    )
    _wait_for(lambda: _files(folder) >= 2, proc)
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert "Traceback" not in err and err.startswith(f"Stopped by {name}: ")
    done = _finished(folder)
    assert (
        f"{done} of 120 row group(s) are finished and kept in {folder}. Continue with: ddsynth resume {folder}" in err
    )
    assert not list(folder.rglob(".*.tmp-*")), "a half-written file was left"
    assert not (folder / ".dd.lock.json").exists()
    resumed = resume_dataset(folder)  # the lock is free; the folder alone says how to continue
    assert resumed.generated_row_groups == 120 - done
    assert load_dataset(folder).equals(
        generate(CUSTOMERS, 120_000, buffer_size=1000, artifact_path=tmp_path / "b").load()
    )


@pytest.fixture(scope="module")
def slow_server():
    with OpenAIServerProcess(latency_ms=40, api_key=SECRET) as srv:
        yield srv


def _cached_lines(cache: Path, name: str) -> int:
    try:
        return len((cache / name).read_bytes().splitlines())
    except OSError:
        return 0


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["SIGTERM", "SIGINT"])
@pytest.mark.parametrize("moment", [1, 9], ids=["first-reply-of-row-group-1", "mid-row-group-1"])
def test_signal_inside_the_llm_stage_keeps_every_paid_call(tmp_path, slow_server, signum, code, moment):
    config = write_config(tmp_path / "llm.yaml", llm_config(slow_server.base_url))
    env = {KEY_ENV: SECRET}
    folder = tmp_path / "a" / "ds"
    proc = _start(
        "generate",
        config,
        "-n",
        80,
        "--buffer-size",
        16,
        "--artifact-path",
        tmp_path / "a",
        "--dataset-name",
        "ds",
        env=env,
    )
    cache = folder / "llm-cache"
    _wait_for(lambda: _cached_lines(cache, "rg_00001.jsonl") >= moment, proc)
    # From here requests are held: dd cannot finish before the signal (the ones already being
    # answered still come back, during the unwind or before it).
    slow_server.set_faults([{"kind": "hold", "name": "signalled"}])
    try:
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=60)
        wait_for(lambda: slow_server.stats()["in_flight"] == 0, 60, "the server to drop dd's held requests")
    finally:
        slow_server.clear_faults()
    assert proc.returncode == code, err
    assert "Traceback" not in err and f"Continue with: ddsynth resume {folder}" in err
    assert_no_secret(out + err)
    cached = sum(len(p.read_text().splitlines()) for p in cache.glob("rg_*.jsonl"))
    slow_server.reset_stats()
    run = subprocess.run(
        [sys.executable, "-m", "dd_core", "resume", folder],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert "cached" in run.stdout
    paid_again = slow_server.stats()["succeeded"]
    assert paid_again == 80 - cached, "a call finished before the signal was paid for twice"
    straight = tmp_path / "b"
    os.environ[KEY_ENV] = SECRET
    try:
        expected = generate(tmp_path / "llm.yaml", 80, buffer_size=16, artifact_path=straight, dataset_name="ds").load()
    finally:
        del os.environ[KEY_ENV]
    assert load_dataset(folder).equals(expected)
    assert_no_secret_in_files(tmp_path)


def test_sigterm_during_export_leaves_no_partial_output(tmp_path):
    big = generate(CUSTOMERS, 60_000, buffer_size=2000, artifact_path=tmp_path, dataset_name="big").path
    out = tmp_path / "out.jsonl"
    proc = _start("export", big, "-o", out)
    _wait_for(lambda: any(tmp_path.glob(".out.jsonl.tmp-*")), proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert "Traceback" not in err and "Stopped by SIGTERM; nothing was left half-written" in err
    assert not out.exists() and not list(tmp_path.glob(".out.jsonl.tmp-*"))


def test_a_second_sigterm_during_the_unwind_still_exits_143(tmp_path):
    folder = tmp_path / "ds"
    proc = _start(
        "generate", CUSTOMERS, "-n", 120_000, "--buffer-size", 1000, "--artifact-path", tmp_path, "--dataset-name", "ds"
    )
    _wait_for(lambda: _files(folder) >= 1, proc)
    proc.send_signal(signal.SIGTERM)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143 and "Traceback" not in err, err
    assert resume_dataset(folder).num_records == 120_000
