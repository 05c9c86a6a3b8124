"""The storage contract, on every backend against its real server: a local folder, S3
(SeaweedFS), GCS (fake-gcs-server) and Azure Blob (Azurite).

- kill -9 mid-write leaves nothing half-written, and the resumed dataset equals an
  uninterrupted run;
- of two writers, the second is refused at once (exit 5);
- a dead holder's lock (or lease) is taken over by exactly one of several racing processes;
- the LLM response cache appends and reads back on each backend;
- worker processes start (and do not hang) after the parent used an object store.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from dd_core import DatasetLockedError, generate, load_dataset
from dd_core.engine.in_process import run_row_group
from dd_core.engine.llm.runtime import LLMRuntime
from dd_core.storage.backend import LockHeld
from dd_core.storage.filesystems import StoragePath, storage_path
from dd_core.storage.row_group_files import read_info
from dd_core.testing.llm_server import OpenAIServer
from tests.core.test_llm_columns import chain_config
from tests.support import EXAMPLES, ROOT, run_dd

CUSTOMERS = EXAMPLES / "customers.yaml"
RECORDS, BUFFER = 3500, 500  # 7 row groups, the last one partial


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> pd.DataFrame:
    return generate(CUSTOMERS, RECORDS, buffer_size=BUFFER, artifact_path=tmp_path_factory.mktemp("local")).load()


def files(root: StoragePath) -> list[str]:
    """Every file under ``root``, relative to it, on any backend."""
    if root.is_local:
        folder = root.local
        return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()) if folder.exists() else []
    return sorted(key[len(root.path) + 1 :] for key in root.fs.list_keys(root.path))


def generate_command(root: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "dd_core", "generate", str(CUSTOMERS), "-n", str(RECORDS), "--buffer-size",
            str(BUFFER), "--artifact-path", root, *extra]  # fmt: skip


def test_generate_status_and_export_equal_the_local_run(storage_root, reference, tmp_path):
    run = run_dd("generate", CUSTOMERS, "-n", RECORDS, "--buffer-size", BUFFER, "--artifact-path", storage_root)
    assert run.returncode == 0, run.stderr
    assert "Found credentials" not in run.stderr and "Traceback" not in run.stderr
    folder = storage_path(f"{storage_root}/customers")
    assert load_dataset(folder).equals(reference)
    # (A local folder keeps its lock file; an object store's lease is deleted on release.)
    assert [f for f in files(folder) if f != ".dd.lock"] == ["config.json", "metadata.json"] + [
        f"parquet-files/batch_{i:05d}.parquet" for i in range(7)
    ]
    status = run_dd("status", folder, "--config", CUSTOMERS)
    assert status.returncode == 0 and "7 of 7 finished" in status.stdout and "already complete" in status.stdout
    export = run_dd("export", folder, "--format", "parquet", "-o", tmp_path / "out.parquet")
    assert export.returncode == 0, export.stderr
    assert pd.read_parquet(tmp_path / "out.parquet").equals(reference)


@pytest.mark.parametrize(
    ("point", "hit", "record_seconds"),
    [
        ("parquet_tmp_written", 3, "0"),
        ("parquet_renamed", 4, "0"),
        ("metadata_renamed", 2, "0"),
        ("parquet_renamed", 4, "inf"),  # four row groups finished, none recorded yet
    ],
)
def test_kill_9_mid_write_then_resume_equals_the_uninterrupted_run(storage_root, reference, point, hit, record_seconds):
    # When metadata.json is written is set (DD_RECORD_SECONDS: after every row group, or only at
    # the start and end), so the n-th hit of a point is a known instant of the write path.
    env = {**os.environ, "DD_FAULT_POINT": point, "DD_FAULT_HIT": str(hit), "DD_RECORD_SECONDS": record_seconds}
    # One worker: a named fault point counts its hits in one process, the writer's.
    killed = subprocess.run(
        generate_command(storage_root, "--workers", "1"), cwd=ROOT, env=env, capture_output=True, timeout=180
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    folder = storage_path(f"{storage_root}/customers")
    written = [f for f in files(folder) if f.startswith("parquet-files/")]
    assert "metadata.json" in files(folder) and 0 < len(written) < 7
    for name in written:  # whatever is there is whole: each file reads and says what it is
        assert read_info(folder / name).num_rows == BUFFER
    result = generate(CUSTOMERS, RECORDS, buffer_size=BUFFER, artifact_path=storage_root, resume="always")
    assert result.load().equals(reference)
    assert [f for f in files(folder) if f.startswith("parquet-files/")] == [
        f"parquet-files/batch_{i:05d}.parquet" for i in range(7)
    ]
    assert result.metadata["status"] == "complete" and result.metadata["actual_num_records"] == RECORDS


def test_a_second_writer_is_refused_at_once(storage_root, reference, tmp_path):
    gate = tmp_path / "gate"
    env = {**os.environ, "DD_FAULT_POINT": "parquet_renamed", "DD_FAULT_HIT": "2", "DD_FAULT_ACTION": "wait",
           "DD_FAULT_GATE": str(gate)}  # fmt: skip
    first = subprocess.Popen(generate_command(storage_root, "--workers", "1"), cwd=ROOT, env=env,
                             stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)  # fmt: skip
    try:
        assert "fault point parquet_renamed reached" in first.stderr.readline()
        second = run_dd("generate", CUSTOMERS, "-n", RECORDS, "--buffer-size", BUFFER, "--artifact-path", storage_root)
        assert second.returncode == 5, second.stderr
        assert "is being written by another process" in second.stderr and f"pid {first.pid}" in second.stderr
        gate.touch()  # the first writer goes on and finishes
        assert first.wait(180) == 0
    finally:
        first.kill()
        first.stderr.close()
    assert load_dataset(storage_path(f"{storage_root}/customers")).equals(reference)


def _hold_lock(lock_url: str, ready) -> None:  # a process that takes the lock, then is killed
    with storage_path(lock_url).lock(wait_s=0):
        ready.set()
        signal.pause()


def _try_lock(lock_url: str, start, tried, results) -> None:
    start.wait()
    try:
        with storage_path(lock_url).lock(wait_s=0):
            results.put("won")
            tried.wait()  # hold it until every racer has tried
    except LockHeld:
        results.put("held")
        tried.wait()


def test_a_dead_holders_lock_is_taken_over_exactly_once(storage_root):
    lock_url = f"{storage_root}/customers/.dd.lock"
    spawn = multiprocessing.get_context("spawn")  # each racer a fresh process, as on other machines
    ready = spawn.Event()
    holder = spawn.Process(target=_hold_lock, args=(lock_url, ready))
    holder.start()
    assert ready.wait(120)
    racers_n = 4
    start, tried, results = spawn.Event(), spawn.Barrier(racers_n), spawn.Queue()
    racers = [spawn.Process(target=_try_lock, args=(lock_url, start, tried, results)) for _ in range(racers_n)]
    for racer in racers:
        racer.start()
    # While the holder lives, nobody gets it.
    with pytest.raises(LockHeld, match=f"pid {holder.pid}"):
        with storage_path(lock_url).lock(wait_s=0):
            pass
    os.kill(holder.pid, signal.SIGKILL)
    holder.join()
    start.set()
    outcomes = sorted(results.get(timeout=120) for _ in racers)
    for racer in racers:
        racer.join(60)
    assert outcomes == ["held", "held", "held", "won"]
    with storage_path(lock_url).lock(wait_s=0):  # released by the winner
        pass


def test_llm_response_cache_appends_and_reads_back(storage_root):
    with OpenAIServer() as server:
        config = chain_config(server.base_url)
        first = run_row_group(config, 0, 30, llm=LLMRuntime(cache_dir=storage_path(f"{storage_root}/cache")))
        assert server.stats()["succeeded"] == 60
        server.reset_stats()
        again = run_row_group(config, 0, 30, llm=LLMRuntime(cache_dir=storage_path(f"{storage_root}/cache")))
        assert server.stats()["requests_total"] == 0 and again.usage["writer"].cache_hits == 60
    assert again.table.equals(first.table)


WORKERS_AFTER_OBJECT_STORE = """
import sys
from dd_core import load_config
from dd_core.orchestration import RowGroupJob, produce_row_groups, storage_path
root = storage_path(sys.argv[1])
root.list_names()  # the parent uses the object store; no Python thread is left running
jobs = [RowGroupJob(i, 500, root / f"batch_{i:05d}.parquet") for i in range(4)]
with produce_row_groups(load_config(sys.argv[2]), jobs, buffer_size=500, workers=2) as produced:
    print(sorted(part.info.row_group for part in produced))
"""


@pytest.mark.parametrize("storage_root", ["s3", "gs", "az"], indirect=True)
def test_worker_processes_start_after_the_parent_used_an_object_store(storage_root):
    run = subprocess.run([sys.executable, "-c", WORKERS_AFTER_OBJECT_STORE, f"{storage_root}/rg", str(CUSTOMERS)],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[0, 1, 2, 3]"


KILL_MID_UPLOAD = """
import sys
from pathlib import Path
from dd_core.storage import object_store
from dd_core.storage.filesystems import storage_path
object_store.SINGLE_PUT_BYTES = 1 << 20  # this 40 MiB file goes up in 16 MiB parts
source = Path(sys.argv[2])
source.write_bytes(b"x" * (40 << 20))
storage_path(sys.argv[1]).publish(source)
"""


@pytest.mark.parametrize("storage_root", ["s3", "gs", "az"], indirect=True)
def test_kill_9_during_a_multipart_upload_leaves_no_object(storage_root, tmp_path):
    target = f"{storage_root}/big/dataset.parquet"
    env = {**os.environ, "DD_FAULT_POINT": "publish_partial"}
    run = subprocess.run([sys.executable, "-c", KILL_MID_UPLOAD, target, str(tmp_path / "big")], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert run.returncode == -signal.SIGKILL, run.stderr
    assert not storage_path(target).exists()
    assert files(storage_path(f"{storage_root}/big")) == []


@pytest.mark.parametrize("storage_root", ["s3", "gs", "az"], indirect=True)
def test_a_lease_held_elsewhere_is_respected_until_it_expires(storage_root):
    lock = storage_path(f"{storage_root}/customers/.dd.lock")

    def lease(expires_in: float) -> None:
        body = {"pid": 4242, "host": "elsewhere", "since": "earlier", "command": "ddsynth generate",
                "nonce": os.urandom(8).hex(), "expires_at": time.time() + expires_in}  # fmt: skip
        lock.write_atomic(json.dumps(body).encode())

    lease(600)  # a live writer on another machine
    with pytest.raises(DatasetLockedError, match="pid 4242 on elsewhere"):
        generate(CUSTOMERS, 100, artifact_path=storage_root)
    lease(-1)  # that writer stopped renewing: its lease expired
    assert generate(CUSTOMERS, 100, buffer_size=50, artifact_path=storage_root).num_records == 100
    assert not lock.exists()  # released


def test_s3_credentials_from_an_aws_profile_file(s3_bucket, tmp_path):
    """obstore reads only the AWS_* variables and roles; a profile in ~/.aws is read through boto3,
    quietly (no botocore 'Found credentials' line)."""
    home = tmp_path / "home"
    (home / ".aws").mkdir(parents=True)
    key, secret = os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"]
    (home / ".aws" / "credentials").write_text(
        f"[default]\naws_access_key_id = {key}\naws_secret_access_key = {secret}\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    env["AWS_METADATA_ENDPOINT"] = (
        "http://127.0.0.1:9"  # were the profile missed: no instance-metadata call off this host
    )
    command = [sys.executable, "-m", "dd_core", "generate", str(CUSTOMERS), "-n", "100", "--artifact-path", s3_bucket]
    run = subprocess.run(command, cwd=ROOT, env={**env, "HOME": str(home)}, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "Found credentials" not in run.stderr and secret not in run.stderr + run.stdout
    assert files(storage_path(f"{s3_bucket}/customers"))
