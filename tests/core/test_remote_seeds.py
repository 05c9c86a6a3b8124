"""Seed datasets from object stores and the Hugging Face Hub: the same rows as the same file on
the local disk, read in row-group-sized slices, the fingerprint following the content, and
hostile cases (a missing bucket, expired credentials, a seed replaced between row groups)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import huggingface_hub
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from huggingface_hub import constants as hub_constants

from dd_core import fingerprint, generate, load_config
from dd_core.storage.filesystems import storage_path
from dd_core.testing.hub_server import HubServer
from tests.support import EXAMPLES, ROOT, run_dd

TOKEN = "hf_dd_seed_token_0123456789"


def seed_table(rows: int = 5000, salt: str = "") -> pa.Table:
    return pa.table({"item": [f"item-{i}{salt}" for i in range(rows)], "weight": np.arange(rows, dtype=np.float64)})


def parquet_bytes(table: pa.Table, row_group_size: int = 250) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, row_group_size=row_group_size)
    return sink.getvalue().to_pybytes()


def seeded_config(path: str, order: str = "shuffled") -> dict:
    return {
        "name": "seeded",
        "seed": 11,
        "columns": [
            {"name": "catalogue", "type": "seed_dataset", "path": path, "order": order},
            {"name": "qty", "type": "uniform", "low": 1, "high": 9, "dtype": "int"},
        ],
    }


@pytest.mark.parametrize("storage_root", ["s3", "gs", "az"], indirect=True)
@pytest.mark.parametrize("order", ["ordered", "shuffled"])
def test_a_remote_parquet_seed_gives_the_local_files_rows(storage_root, order, tmp_path):
    data = parquet_bytes(seed_table())
    (tmp_path / "seed.parquet").write_bytes(data)
    storage_path(f"{storage_root}/seeds/seed.parquet").write_atomic(data)
    local = generate(seeded_config(str(tmp_path / "seed.parquet"), order), 3000, buffer_size=500,
                     artifact_path=tmp_path / "a").load()  # fmt: skip
    remote = generate(seeded_config(f"{storage_root}/seeds/seed.parquet", order), 3000, buffer_size=500,
                      artifact_path=tmp_path / "b").load()  # fmt: skip
    assert remote.equals(local)


@pytest.mark.parametrize("storage_root", ["s3"], indirect=True)
def test_a_remote_csv_seed_gives_the_local_files_rows(storage_root, tmp_path):
    csv = EXAMPLES / "data" / "products.csv"
    storage_path(f"{storage_root}/seeds/products.csv").write_atomic(csv.read_bytes())
    local = generate(seeded_config(str(csv)), 500, buffer_size=100, artifact_path=tmp_path / "a").load()
    remote = generate(seeded_config(f"{storage_root}/seeds/products.csv"), 500, buffer_size=100,
                      artifact_path=tmp_path / "b").load()  # fmt: skip
    assert remote.equals(local)


@pytest.mark.parametrize("storage_root", ["s3", "gs", "az"], indirect=True)
def test_the_fingerprint_follows_the_seeds_content(storage_root):
    url = f"{storage_root}/seeds/seed.parquet"
    storage_path(url).write_atomic(parquet_bytes(seed_table()))
    first = fingerprint(load_config(seeded_config(url))).config_hash
    assert fingerprint(load_config(seeded_config(url))).config_hash == first  # nothing changed
    storage_path(url).write_atomic(parquet_bytes(seed_table(salt="-v2")))
    assert fingerprint(load_config(seeded_config(url))).config_hash != first


@pytest.fixture
def hub(monkeypatch):
    with HubServer(tokens={TOKEN: "dd-user"}) as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        monkeypatch.setenv("HF_TOKEN", TOKEN)
        monkeypatch.setattr(hub_constants, "HF_HUB_DISABLE_XET", True)
        yield server


def upload_to_hub(hub: HubServer, data: bytes, path: str = "data/seed.parquet", private: bool = False) -> str:
    api = huggingface_hub.HfApi(endpoint=hub.url, token=TOKEN)
    api.create_repo("dd-user/seeds", repo_type="dataset", private=private, exist_ok=True)
    return api.upload_file(path_or_fileobj=data, path_in_repo=path, repo_id="dd-user/seeds", repo_type="dataset").oid


def test_a_hub_seed_is_read_in_slices_at_one_commit(hub, tmp_path):
    data = parquet_bytes(seed_table(100_000), row_group_size=5000)
    first_commit = upload_to_hub(hub, data)
    (tmp_path / "seed.parquet").write_bytes(data)
    local = generate(seeded_config(str(tmp_path / "seed.parquet"), "ordered"), 1000, buffer_size=500,
                     artifact_path=tmp_path / "a").load()  # fmt: skip
    hub.faults.bytes_served = 0
    config = seeded_config("hf://datasets/dd-user/seeds/data/seed.parquet", "ordered")
    remote = generate(config, 1000, buffer_size=500, artifact_path=tmp_path / "b")
    assert remote.load().equals(local)
    # 1,000 rows of 100,000: the footer and one parquet row group, not the file.
    assert hub.faults.bytes_served < len(data) / 4
    # A new commit of other content changes the fingerprint; naming the old commit pins it.
    upload_to_hub(hub, parquet_bytes(seed_table(100_000, salt="-v2"), row_group_size=5000))
    assert fingerprint(load_config(config)).config_hash != remote.metadata["config_hash"]
    pinned = seeded_config(f"hf://datasets/dd-user/seeds@{first_commit}/data/seed.parquet", "ordered")
    assert fingerprint(load_config(pinned)).config_hash == remote.metadata["config_hash"]


@pytest.mark.parametrize(
    ("url", "phrase"),
    [
        ("hf://datasets/dd-user/nothing-here/seed.parquet", "does not exist, or is private or gated"),
        ("hf://datasets/dd-user/seeds/missing.parquet", "no such file"),
        ("hf://datasets/dd-user/seeds@no-such-branch/data/seed.parquet", "that revision does not exist"),
        ("hf://models/x/y/seed.parquet", "use hf://datasets/org/name"),
    ],
)
def test_hostile_hub_seeds(hub, url, phrase, tmp_path):
    upload_to_hub(hub, parquet_bytes(seed_table(100)))
    config = tmp_path / "config.json"
    config.write_text(json.dumps(seeded_config(url)))
    run = run_dd("validate", config, env={"HF_ENDPOINT": hub.url, "HF_TOKEN": TOKEN})
    assert run.returncode == 2, run.stderr
    assert phrase in run.stderr and "catalogue" in run.stderr and "Traceback" not in run.stderr
    assert TOKEN not in run.stderr


def test_a_private_hub_seed_needs_a_token(hub, tmp_path):
    upload_to_hub(hub, parquet_bytes(seed_table(100)), private=True)
    config = tmp_path / "config.json"
    config.write_text(json.dumps(seeded_config("hf://datasets/dd-user/seeds/data/seed.parquet")))
    without = run_dd("validate", config, env={"HF_ENDPOINT": hub.url, "HF_TOKEN": ""})
    assert without.returncode == 2 and "HF_TOKEN does not grant access" in without.stderr
    with_token = run_dd("validate", config, env={"HF_ENDPOINT": hub.url, "HF_TOKEN": TOKEN})
    assert with_token.returncode == 0, with_token.stderr


@pytest.mark.parametrize(("server", "url"), [("azurite", "az://no-such-bucket/seed.parquet"),
                                             ("fake_gcs", "gs://no-such-bucket/seed.parquet"),
                                             ("seaweedfs", "s3://no-such-bucket/seed.parquet")])  # fmt: skip
def test_a_seed_in_a_missing_bucket(server, url, request, tmp_path):
    request.getfixturevalue(server)
    config = tmp_path / "config.json"
    config.write_text(json.dumps(seeded_config(url)))
    run = run_dd("validate", config)
    assert run.returncode == 2, run.stderr
    assert "field 'path'" in run.stderr and "does not exist" in run.stderr


def test_a_seed_with_expired_credentials(s3_bucket, tmp_path):
    storage_path(f"{s3_bucket}/seed.parquet").write_atomic(parquet_bytes(seed_table()))
    config = tmp_path / "config.json"
    config.write_text(json.dumps(seeded_config(f"{s3_bucket}/seed.parquet")))
    run = run_dd("validate", config, env={"AWS_SECRET_ACCESS_KEY": "an-expired-secret-4711"})
    assert run.returncode == 2, run.stderr
    assert "403 Forbidden" in run.stderr and "may have expired" in run.stderr
    assert "an-expired-secret-4711" not in run.stderr


@pytest.mark.parametrize("storage_root", ["s3", "gs", "az"], indirect=True)
def test_a_seed_replaced_between_row_groups_stops_the_run(storage_root, tmp_path):
    url = f"{storage_root}/seeds/seed.parquet"
    storage_path(url).write_atomic(parquet_bytes(seed_table(), row_group_size=100))
    config = tmp_path / "config.json"
    config.write_text(json.dumps(seeded_config(url, "ordered")))
    gate = tmp_path / "gate"
    env = {**os.environ, "DD_FAULT_POINT": "parquet_renamed", "DD_FAULT_HIT": "1", "DD_FAULT_ACTION": "wait",
           "DD_FAULT_GATE": str(gate)}  # fmt: skip
    command = [sys.executable, "-m", "dd_core", "generate", str(config), "-n", "2000", "--buffer-size", "500",
               "--artifact-path", str(tmp_path / "out"), "--workers", "1"]  # fmt: skip
    run = subprocess.Popen(command, cwd=ROOT, env=env, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert "fault point parquet_renamed reached" in run.stderr.readline()
        storage_path(url).write_atomic(parquet_bytes(seed_table(salt="-v2"), row_group_size=100))
        gate.touch()
        out, err = run.communicate(timeout=180)
    finally:
        run.kill()
    assert run.returncode == 6, err
    assert "changed during the run" in err and "Traceback" not in err
    # The run kept what it made from the old content, and mixed in nothing of the new.
    table = pq.read_table(tmp_path / "out" / "seeded" / "parquet-files")
    assert not any(item.endswith("-v2") for item in table.column("item").to_pylist())
