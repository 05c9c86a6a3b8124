"""Object stores that refuse: a missing bucket, expired or wrong credentials, a plain-http
endpoint not allowed, nothing listening, malformed URLs. Each is one message with exit 6 (2 for
a malformed URL), in seconds, with no traceback and no secret printed."""

from __future__ import annotations

import pytest
from moto.server import ThreadedMotoServer

from dd_core.testing.object_stores.process import free_port
from tests.conftest import new_bucket
from tests.support import EXAMPLES, run_dd

GENERATE = ("generate", EXAMPLES / "customers.yaml", "-n", "100", "--artifact-path")


def refused(run, code: int, *phrases: str) -> None:
    assert run.returncode == code, run.stderr
    assert "Traceback" not in run.stderr
    for phrase in phrases:
        assert phrase in run.stderr


@pytest.mark.parametrize(
    ("server", "url"), [("fake_gcs", "gs://no-such-bucket/x"), ("azurite", "az://no-such-bucket/x")]
)
def test_missing_bucket(server, url, request):
    request.getfixturevalue(server)
    refused(run_dd(*GENERATE, url), 6, "no-such-bucket", "Finished files are unchanged")


def test_missing_s3_bucket_on_reading(seaweedfs):
    # SeaweedFS creates a bucket on the first PUT into it; a read shows that one is missing.
    refused(run_dd("status", "s3://no-such-bucket/x/customers"), 6, "'no-such-bucket' does not exist")


def test_missing_s3_bucket_on_writing(s3_bucket):
    """Real S3 refuses a PUT into a missing bucket, which SeaweedFS accepts: moto makes that fault."""
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    try:
        host, port = moto.get_host_and_port()
        run = run_dd(*GENERATE, "s3://no-such-bucket/x", env={"AWS_ENDPOINT_URL": f"http://{host}:{port}"})
    finally:
        moto.stop()
    refused(run, 6, "'no-such-bucket' does not exist")


def test_expired_s3_credentials(s3_bucket):
    secret = "an-expired-secret-key-4711"
    run = run_dd(*GENERATE, f"{s3_bucket}/x", env={"AWS_SECRET_ACCESS_KEY": secret})
    refused(run, 6, "403 Forbidden", "access denied", "may have expired", "AWS_SECRET_ACCESS_KEY")
    assert secret not in run.stderr + run.stdout


def test_wrong_azure_account_key(azurite):
    container = new_bucket(azurite)
    key = "d3Jvbmcga2V5IGZvciB0aGUgdGVzdA=="
    connection = azurite.connection_string.replace(azurite.connection_string.split("AccountKey=")[1].split(";")[0], key)
    run = run_dd(*GENERATE, f"{container}/x", env={"AZURE_STORAGE_CONNECTION_STRING": connection})
    refused(run, 6, "403 Forbidden", "AZURE_STORAGE_CONNECTION_STRING")
    assert key not in run.stderr + run.stdout


def test_plain_http_endpoint_not_allowed(fake_gcs):
    run = run_dd(*GENERATE, f"{new_bucket(fake_gcs)}/x", env={"GOOGLE_ALLOW_HTTP": "false"})
    refused(run, 6, "set GOOGLE_ALLOW_HTTP=true")


def test_nothing_listening(seaweedfs):
    run = run_dd(*GENERATE, "s3://bucket/x", env={"AWS_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}"}, timeout=60)
    refused(run, 6, "could not be reached")


@pytest.mark.parametrize(
    ("url", "phrase"),
    [
        ("s3://", "names no bucket"),
        ("az://ab/x", "3 to 63 characters"),
        ("ftp://host/x", "unsupported storage location"),
    ],
)
def test_malformed_urls(url, phrase):
    refused(run_dd(*GENERATE, url), 2, phrase)
