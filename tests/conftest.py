from __future__ import annotations

import os
import sys
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
    sys.meta_path[:] = [finder for finder in sys.meta_path if not isinstance(finder, without_pandas._NoPandas)]


@pytest.fixture
def customers_yaml() -> Path:
    return EXAMPLES / "customers.yaml"


@pytest.fixture(scope="session")
def s3_server():
    """A real S3-compatible server (moto) on 127.0.0.1, and the AWS variables that reach it."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": f"http://{host}:{port}",
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    yield env
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    server.stop()


@pytest.fixture
def s3_bucket(s3_server) -> str:
    """A new, empty bucket; returns its s3:// URI."""
    import boto3

    name = f"dd-{uuid.uuid4().hex[:12]}"
    boto3.client("s3").create_bucket(Bucket=name)
    return f"s3://{name}"
