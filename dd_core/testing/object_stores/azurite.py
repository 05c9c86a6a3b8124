"""Azurite, Microsoft's Azure Storage emulator (Blob service only).

Installed from npm on first use into a cache folder (``DD_AZURITE_DIR``, default
``~/.cache/dd-azurite/<version>``; needs ``node`` and ``npm``), then reused. Started with
``--skipApiVersionCheck`` (current SDKs send a newer API version than it knows) and
``--disableTelemetry`` (it reports to Application Insights by default). Container
names need at least 3 characters. The account is the emulator's documented development
account.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

import httpx
from filelock import FileLock

from dd_core.testing.object_stores.process import HOST, ServerProcess, free_port

VERSION = "3.37.0"
ACCOUNT = "devstoreaccount1"
#: The emulator's published development key (not a secret).
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def install_dir() -> Path:
    return Path(os.environ.get("DD_AZURITE_DIR") or Path.home() / ".cache" / "dd-azurite" / VERSION)


def azurite_blob() -> Path:
    """The ``azurite-blob`` script, installing Azurite with npm when it is not there yet."""
    folder = install_dir()
    script = folder / "node_modules" / ".bin" / "azurite-blob"
    if script.exists():
        return script
    npm = shutil.which("npm")
    if not npm or not shutil.which("node"):
        raise RuntimeError("Azurite needs Node.js and npm (Debian: apt-get install nodejs npm)")
    folder.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder / ".install.lock")):
        if not script.exists():
            subprocess.run(
                [
                    npm,
                    "install",
                    "--prefix",
                    str(folder),
                    "--no-fund",
                    "--no-audit",
                    "--loglevel=error",
                    f"azurite@{VERSION}",
                ],
                check=True,
                capture_output=True,
                timeout=600,
            )
    return script


class Azurite(ServerProcess):
    name = "azurite"

    def __init__(self, workdir: str | None = None):
        super().__init__(workdir)
        self.port = free_port()

    @property
    def endpoint(self) -> str:
        return f"http://{HOST}:{self.port}/{ACCOUNT}"

    @property
    def data_dir(self) -> Path:
        return self.workdir / "data"

    def command(self) -> Sequence[str]:
        return [
            str(azurite_blob()),
            "--blobHost",
            HOST,
            "--blobPort",
            str(self.port),
            "--location",
            str(self.data_dir),
            "--skipApiVersionCheck",
            "--disableTelemetry",
            "--silent",
        ]

    def ready(self) -> bool:
        try:
            httpx.get(f"{self.endpoint}?comp=list", timeout=2)
        except httpx.HTTPError:
            return False
        return True

    @property
    def connection_string(self) -> str:
        return f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};BlobEndpoint={self.endpoint};"

    @property
    def env(self) -> dict[str, str]:
        return {"AZURE_STORAGE_CONNECTION_STRING": self.connection_string}

    def create_bucket(self, name: str) -> None:
        # Deferred: azure-storage-blob is a test dependency, needed only to create containers.
        from azure.storage.blob import BlobServiceClient

        BlobServiceClient.from_connection_string(self.connection_string).create_container(name)

    def url(self, bucket: str, prefix: str = "") -> str:
        return f"az://{bucket}/{prefix}".rstrip("/")
