"""Datasets on an S3-compatible object store (a real moto server on 127.0.0.1)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import boto3
import pytest

from dd_core import DatasetLockedError, generate
from dd_core.engine.in_process import run_row_group
from dd_core.engine.llm.runtime import LLMRuntime
from dd_core.storage.filesystems import storage_path
from dd_core.testing.llm_server import OpenAIServer
from tests.core.test_llm_columns import chain_config
from tests.support import EXAMPLES, ROOT, run_dd

CUSTOMERS = EXAMPLES / "customers.yaml"
RECORDS, BUFFER = 3500, 500


@pytest.fixture(scope="module")
def local_reference(tmp_path_factory):
    return generate(CUSTOMERS, RECORDS, buffer_size=BUFFER, artifact_path=tmp_path_factory.mktemp("local")).load()


def _keys(uri: str) -> list[str]:
    bucket, _, prefix = uri[len("s3://") :].partition("/")
    pages = boto3.client("s3").get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return sorted(obj["Key"][len(prefix) :].lstrip("/") for page in pages for obj in page.get("Contents", []))


def test_generate_status_and_export_on_object_storage(s3_bucket, local_reference, tmp_path):
    result = generate(CUSTOMERS, RECORDS, buffer_size=BUFFER, artifact_path=f"{s3_bucket}/datasets")
    assert str(result.path) == f"{s3_bucket}/datasets/customers"
    assert result.load().equals(local_reference)
    keys = _keys(str(result.path))
    assert keys == ["config.json", "metadata.json"] + [f"parquet-files/batch_{i:05d}.parquet" for i in range(7)]
    status = run_dd("status", result.path, "--config", CUSTOMERS)
    assert status.returncode == 0 and "7 of 7 finished" in status.stdout and "already complete" in status.stdout
    export = run_dd("export", result.path, "--format", "parquet", "-o", tmp_path / "out.parquet")
    assert export.returncode == 0, export.stderr
    import pandas as pd

    assert pd.read_parquet(tmp_path / "out.parquet").equals(local_reference)


def _kill_run(uri: str, env: dict) -> None:
    # One worker: a named fault point counts its hits in one process, the writer's.
    command = [
        sys.executable,
        "-m",
        "dd_core",
        "generate",
        str(CUSTOMERS),
        "-n",
        str(RECORDS),
        "--buffer-size",
        str(BUFFER),
        "--artifact-path",
        uri,
        "--workers",
        "1",
    ]
    run = subprocess.run(command, cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True, timeout=120)
    assert run.returncode == -signal.SIGKILL, run.stderr


@pytest.mark.parametrize(
    ("point", "hit"), [("parquet_tmp_written", 3), ("parquet_renamed", 4), ("metadata_renamed", 2)]
)
def test_sigkill_midway_then_resume_equals_the_local_run(s3_bucket, local_reference, point, hit):
    uri = f"{s3_bucket}/datasets"
    _kill_run(uri, {"DD_FAULT_POINT": point, "DD_FAULT_HIT": str(hit)})
    before = _keys(f"{uri}/customers")
    assert "metadata.json" in before and len([k for k in before if k.startswith("parquet-files/")]) < 7
    result = generate(CUSTOMERS, RECORDS, buffer_size=BUFFER, artifact_path=uri, resume="always")
    assert result.load().equals(local_reference)
    assert [k for k in _keys(str(result.path)) if k.startswith("parquet-files/")] == [
        f"parquet-files/batch_{i:05d}.parquet" for i in range(7)
    ]
    assert result.metadata["status"] == "complete" and result.metadata["actual_num_records"] == RECORDS


def test_lock_on_object_storage(s3_bucket):
    uri = f"{s3_bucket}/datasets"
    lock = f"{uri}/customers/.dd.lock"
    bucket, _, key = lock[len("s3://") :].partition("/")
    s3 = boto3.client("s3")

    def lease(host: str, pid: int, expires_in: float) -> None:
        body = {
            "pid": pid,
            "host": host,
            "since": "earlier",
            "command": "ddsynth generate",
            "expires_at": time.time() + expires_in,
        }
        s3.put_object(Bucket=bucket, Key=key, Body=json.dumps(body).encode())

    lease("elsewhere", 4242, 600)  # a live writer on another machine
    with pytest.raises(DatasetLockedError, match="pid 4242 on elsewhere"):
        generate(CUSTOMERS, 100, artifact_path=uri)
    lease("elsewhere", 4242, -1)  # that writer stopped renewing: its lease expired
    generate(CUSTOMERS, 100, buffer_size=50, artifact_path=uri)
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    ).stdout.strip()
    lease(socket.gethostname(), int(dead), 600)  # a killed process on this machine
    result = generate(CUSTOMERS, 200, buffer_size=50, artifact_path=uri)
    assert result.num_records == 200
    assert ".dd.lock" not in _keys(f"{uri}/customers")  # released


def test_llm_response_cache_on_object_storage(s3_bucket):
    with OpenAIServer() as server:
        config = chain_config(server.base_url)
        runtime = LLMRuntime(cache_dir=storage_path(f"{s3_bucket}/cache"))
        first = run_row_group(config, 0, 30, llm=runtime)
        assert server.stats()["succeeded"] == 60
        server.reset_stats()
        again = run_row_group(config, 0, 30, llm=LLMRuntime(cache_dir=storage_path(f"{s3_bucket}/cache")))
        assert server.stats()["requests_total"] == 0 and again.usage["writer"].cache_hits == 60
    assert again.table.equals(first.table)
    assert any(k.startswith("rg_00000.jsonl.log/") for k in _keys(f"{s3_bucket}/cache"))
