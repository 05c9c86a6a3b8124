from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from dd_core import without_pandas
from tests.support import EXAMPLES


@pytest.fixture(autouse=True)
def _pandas_importable_again():
    """A command run in-process (typer's CliRunner) refuses pandas for the rest of the process, as
    ``ddsynth generate`` does; the next test gets a process where pandas can be imported again."""
    yield
    without_pandas.allow_pandas()


@pytest.fixture
def customers_yaml() -> Path:
    return EXAMPLES / "customers.yaml"


def _serve(kind: str, tmp_path_factory):
    """Start one of the real object-store servers for the session, with its client variables
    in this process's environment (inherited by the subprocesses tests start)."""
    from dd_core.testing.object_stores import SERVERS

    server = SERVERS[kind](tmp_path_factory.mktemp(kind)).start()
    saved = {k: os.environ.get(k) for k in server.env}
    os.environ.update(server.env)
    try:
        yield server
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        server.stop()


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory):
    """SeaweedFS: a real S3 server on 127.0.0.1 (the AWS_* variables reach it)."""
    yield from _serve("s3", tmp_path_factory)


@pytest.fixture(scope="session")
def azurite(tmp_path_factory):
    """Azurite: Azure Blob on 127.0.0.1 (AZURE_STORAGE_CONNECTION_STRING reaches it)."""
    yield from _serve("az", tmp_path_factory)


@pytest.fixture(scope="session")
def fake_gcs(tmp_path_factory):
    """fake-gcs-server behind its XML shim: GCS on 127.0.0.1 (GOOGLE_SERVICE_ACCOUNT reaches it)."""
    yield from _serve("gs", tmp_path_factory)


def new_bucket(server) -> str:
    """A new, empty bucket (or container) on ``server``; returns its URL."""
    name = f"dd-{uuid.uuid4().hex[:12]}"
    server.create_bucket(name)
    return server.url(name)


@pytest.fixture
def s3_bucket(seaweedfs) -> str:
    """A new, empty bucket on SeaweedFS; returns its s3:// URI."""
    return new_bucket(seaweedfs)


@pytest.fixture(params=["local", "s3", "gs", "az"])
def storage_root(request, tmp_path) -> str:
    """A new, empty place for datasets on each backend: a local folder, an S3 bucket
    (SeaweedFS), a GCS bucket (fake-gcs-server), an Azure container (Azurite)."""
    if request.param == "local":
        return str(tmp_path / "datasets")
    server = request.getfixturevalue({"s3": "seaweedfs", "gs": "fake_gcs", "az": "azurite"}[request.param])
    return new_bucket(server)
