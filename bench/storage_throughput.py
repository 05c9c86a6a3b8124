"""Writing and reading a 1M-row dataset (100 row groups of 10,000) through each backend: dd
against the backend's own SDK writing and reading the same parquet files, in one run.

    .venv/bin/python bench/storage_throughput.py [--records 1000000] [--buffer 10000] [--rounds 3]

Backends: the local disk, S3 (SeaweedFS), GCS (fake-gcs-server; dd's writes pass its XML shim,
the SDK's go to the server directly) and Azure Blob (Azurite), each started by this script on
127.0.0.1. The row groups (examples/customers.yaml) are generated once, before timing.

- dd write: what ``ddsynth generate`` does per row group, minus generating it: under the
  dataset's lock (a lease on object stores), each row group's file written crash-safely
  (local: temp file, fsync, rename) and recorded in metadata.json, which is rewritten at most
  once a second (``DD_RECORD_SECONDS``; local: after an fsync of the parquet folder).
- SDK write: the same parquet bytes written as a plain file (local), or put with boto3,
  google-cloud-storage or azure-storage-blob; no lock, no metadata, no fsync. ``local+fsync``
  is the local disk again against files each written to a temp file, fsynced and renamed (what
  it takes for a file to survive a crash whole), so the cost of durability shows apart.
- dd read: ``dd_core.load_dataset`` (metadata, every footer checked, the files, one DataFrame).
- SDK read: list the files, get each, ``pyarrow.parquet.read_table``, one DataFrame.

Rounds alternate dd and SDK; the medians and their ratio are printed (the limit is the SDK).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))

from dd_core import generate_row_group, load_config, load_dataset  # noqa: E402
from dd_core.fingerprinting import fingerprint  # noqa: E402
from dd_core.storage.dataset_folder import DatasetWriter, record_interval  # noqa: E402
from dd_core.storage.filesystems import storage_path  # noqa: E402
from dd_core.storage.layout import DatasetLayout  # noqa: E402
from dd_core.storage.lock import dataset_lock  # noqa: E402
from dd_core.storage.metadata import DatasetMetadata  # noqa: E402
from dd_core.storage.row_group_files import RowGroupIdentity, write_row_group_file  # noqa: E402
from dd_core.testing.object_stores import SERVERS  # noqa: E402

CONFIG = BENCH.parent / "examples" / "customers.yaml"


def dd_write(root: str, tables: list[pa.Table], config, buffer: int) -> None:
    fp = fingerprint(config)
    layout = DatasetLayout(storage_path(f"{root}/customers"))
    identity = RowGroupIdentity(fp.config_hash, fp.config_hash_version, buffer, config.seed)
    meta = DatasetMetadata("customers", fp.config_hash, fp.config_hash_algo, fp.config_hash_version, config.seed,
                           buffer * len(tables), buffer)  # fmt: skip
    with dataset_lock(layout):
        writer = DatasetWriter(layout, meta, record_interval())
        writer.start(config.resolved_dump(), {})
        for index, table in enumerate(tables):
            info = identity.info(index, table.num_rows, table.num_rows)
            # As generate's jobs write them (RowGroupJob(..., sync_folder=False, digest=False)).
            write_row_group_file(layout.batch(index), table, info, sync_folder=False, digest=False)
            writer.record_row_group(info)
        writer.finish("parquet-files")


def parquet_bytes(table: pa.Table, identity: RowGroupIdentity, index: int) -> bytes:
    """The bytes dd writes for a row group (the same key-value metadata), made the same way."""
    info = identity.info(index, table.num_rows, table.num_rows)
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), **info.to_kv()})
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return sink.getvalue().to_pybytes()


class Sdk:
    """The backend's own client: put and get whole objects under ``prefix``."""

    def __init__(self, kind: str, server, bucket: str, workdir: Path):
        self.kind, self.bucket, self.workdir = kind, bucket, workdir
        if kind == "s3":
            import boto3

            self.client = boto3.client("s3", endpoint_url=server.endpoint, region_name="us-east-1",
                                       aws_access_key_id=server.env["AWS_ACCESS_KEY_ID"],
                                       aws_secret_access_key=server.env["AWS_SECRET_ACCESS_KEY"])  # fmt: skip
        elif kind == "gs":
            from google.auth.credentials import AnonymousCredentials
            from google.cloud import storage

            client = storage.Client(project="bench", credentials=AnonymousCredentials(),
                                    client_options={"api_endpoint": server.upstream})  # fmt: skip
            self.client = client.bucket(bucket)
        elif kind == "az":
            from azure.storage.blob import BlobServiceClient

            self.client = BlobServiceClient.from_connection_string(server.connection_string).get_container_client(
                bucket
            )

    def put(self, key: str, data: bytes) -> None:
        if self.kind in ("local", "local+fsync"):
            path = self.workdir / key
            path.parent.mkdir(parents=True, exist_ok=True)
            if self.kind == "local":
                path.write_bytes(data)
                return
            tmp = path.with_name(f".{path.name}.tmp")
            with open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        elif self.kind == "s3":
            self.client.put_object(Bucket=self.bucket, Key=key, Body=data)
        elif self.kind == "gs":
            self.client.blob(key).upload_from_string(data)
        else:
            self.client.upload_blob(key, data, overwrite=True)

    def keys(self, prefix: str) -> list[str]:
        if self.kind in ("local", "local+fsync"):
            return sorted(str(p.relative_to(self.workdir)) for p in (self.workdir / prefix).rglob("*.parquet"))
        if self.kind == "s3":
            pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
            return sorted(o["Key"] for page in pages for o in page.get("Contents", []))
        if self.kind == "gs":
            return sorted(b.name for b in self.client.list_blobs(prefix=prefix))
        return sorted(b.name for b in self.client.list_blobs(name_starts_with=prefix))

    def get(self, key: str) -> bytes:
        if self.kind in ("local", "local+fsync"):
            return (self.workdir / key).read_bytes()
        if self.kind == "s3":
            return self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        if self.kind == "gs":
            return self.client.blob(key).download_as_bytes()
        return self.client.download_blob(key).readall()


def sdk_write(sdk: Sdk, prefix: str, tables: list[pa.Table], identity: RowGroupIdentity) -> None:
    for index, table in enumerate(tables):
        sdk.put(f"{prefix}/batch_{index:05d}.parquet", parquet_bytes(table, identity, index))


def sdk_read(sdk: Sdk, prefix: str):  # noqa: ANN201
    tables = [pq.read_table(pa.BufferReader(sdk.get(key))) for key in sdk.keys(prefix)]
    return pa.concat_tables(tables).replace_schema_metadata(None).to_pandas()


def timed(fn, *args) -> tuple[float, object]:  # noqa: ANN001
    started = time.perf_counter()
    result = fn(*args)
    return time.perf_counter() - started, result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--buffer", type=int, default=10_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--backends", default="local,local+fsync,s3,gs,az")
    args = ap.parse_args()
    config = load_config(CONFIG)
    count = -(-args.records // args.buffer)
    started = time.perf_counter()
    tables = [generate_row_group(config, i, args.buffer, buffer_size=args.buffer) for i in range(count)]
    fp = fingerprint(config)
    identity = RowGroupIdentity(fp.config_hash, fp.config_hash_version, args.buffer, config.seed)
    size = sum(len(parquet_bytes(t, identity, i)) for i, t in enumerate(tables[:3])) / 3 * count
    print(f"{count} row groups of {args.buffer:,} rows generated in {time.perf_counter() - started:.1f} s; "
          f"~{size / 2**20:,.0f} MiB of parquet", flush=True)  # fmt: skip
    print(f"{'backend':>8}{'dd write':>10}{'SDK write':>11}{'ratio':>7}{'dd read':>9}{'SDK read':>10}{'ratio':>7}")
    results = {}
    for kind in args.backends.split(","):
        with tempfile.TemporaryDirectory(prefix=f"dd-bench-{kind}-") as tmp:
            server = None if kind.startswith("local") else SERVERS[kind](Path(tmp) / "server").start()
            try:
                if server is not None:
                    os.environ.update(server.env)
                    bucket = f"bench-{uuid.uuid4().hex[:8]}"
                    server.create_bucket(bucket)
                    root = server.url(bucket)
                else:
                    bucket, root = "", str(Path(tmp) / "dd")
                sdk = Sdk(kind, server, bucket, Path(tmp) / "sdk")
                times = {"dd_write": [], "sdk_write": [], "dd_read": [], "sdk_read": []}
                for round_ in range(args.rounds):
                    dd_root, sdk_prefix = f"{root}/dd{round_}", f"sdk{round_}"
                    times["dd_write"].append(timed(dd_write, dd_root, tables, config, args.buffer)[0])
                    times["sdk_write"].append(timed(sdk_write, sdk, sdk_prefix, tables, identity)[0])
                    seconds, frame = timed(load_dataset, f"{dd_root}/customers")
                    times["dd_read"].append(seconds)
                    seconds, reference = timed(sdk_read, sdk, sdk_prefix)
                    times["sdk_read"].append(seconds)
                    assert frame.equals(reference) and len(frame) == args.buffer * count
            finally:
                if server is not None:
                    server.stop()
        med = {k: statistics.median(v) for k, v in times.items()}
        results[kind] = {**med, "rounds": times}
        print(f"{kind:>8}{med['dd_write']:>9.2f}s{med['sdk_write']:>10.2f}s{med['dd_write'] / med['sdk_write']:>6.2f}x"
              f"{med['dd_read']:>8.2f}s{med['sdk_read']:>9.2f}s{med['dd_read'] / med['sdk_read']:>6.2f}x", flush=True)  # fmt: skip
    print(json.dumps({k: {n: [round(x, 3) for x in v] for n, v in r["rounds"].items()} for k, r in results.items()}))


if __name__ == "__main__":
    main()
