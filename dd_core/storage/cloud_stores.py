"""obstore stores for ``s3://``, ``gs://`` and ``az://`` (``abfs[s]://``) locations, configured
from each cloud's usual environment; credentials are read where they live, never stored by dd.

- S3: the ``AWS_*`` variables (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
  ``AWS_SESSION_TOKEN``, ``AWS_REGION``, ``AWS_ENDPOINT_URL`` for S3-compatible servers), web
  identity and instance roles (obstore); profiles, SSO and ``~/.aws`` files through boto3 when
  it is installed (``pip install ddsynth[aws]``), as obstore does not read them.
- GCS: ``GOOGLE_APPLICATION_CREDENTIALS``, ``GOOGLE_SERVICE_ACCOUNT[_KEY]``, gcloud's
  application-default credentials and the metadata server.
- Azure: ``AZURE_STORAGE_CONNECTION_STRING`` (parsed here: obstore does not read it),
  ``AZURE_STORAGE_ACCOUNT_NAME`` + ``AZURE_STORAGE_ACCOUNT_KEY`` (or a SAS, a client secret,
  the Azure CLI, managed or workload identity); the account may also come from the URL
  (``abfss://container@account.dfs.core.windows.net/path``).

Plain ``http://`` endpoints (local servers) are allowed when the endpoint given says so
(``AWS_ENDPOINT_URL=http://...``, a connection string's ``BlobEndpoint=http://...``), or with
``AWS_ALLOW_HTTP`` / ``GOOGLE_ALLOW_HTTP`` / ``AZURE_ALLOW_HTTP`` set to true.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from obstore.store import AzureStore, GCSStore, S3Store

SCHEMES = {"s3": "s3", "gs": "gs", "az": "az", "abfs": "az", "abfss": "az"}
#: One request's limits; a refused connection fails in seconds, a black-holed host in 3 x 10 s.
CLIENT_OPTIONS = {"timeout": "300s", "connect_timeout": "10s"}
RETRY = {"max_retries": 3, "retry_timeout": timedelta(seconds=60)}


@dataclass(frozen=True)
class Location:
    """Where a bucket is: ``scheme`` as the user wrote it, the cloud it means, the bucket (or
    container), and the Azure account when the URL names it."""

    scheme: str
    cloud: str
    bucket: str
    account: str | None = None
    #: The URL's host part as written (``container@account.dfs.core.windows.net``).
    netloc: str = ""

    @property
    def prefix(self) -> str:
        return f"{self.scheme}://{self.netloc or self.bucket}"


def parse_location(url: str) -> tuple[Location, str] | None:
    """(bucket location, key) of an object-store URL; None when ``url`` is not one.
    Raises ValueError naming the problem for a malformed one."""
    scheme, sep, rest = url.partition("://")
    cloud = SCHEMES.get(scheme.lower()) if sep else None
    if cloud is None:
        return None
    netloc, _, key = rest.partition("/")
    bucket, account = netloc, None
    if cloud == "az" and "@" in netloc:
        bucket, _, host = netloc.partition("@")
        account = host.split(".", 1)[0] or None
    if not bucket:
        raise ValueError(f"{url[:200]!r} names no bucket: use {scheme}://bucket/prefix")
    if cloud == "az" and len(bucket) < 3:
        raise ValueError(f"{url[:200]!r}: Azure container names have 3 to 63 characters")
    return Location(scheme.lower(), cloud, bucket, account, netloc), key.strip("/")


def _truthy(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _is_http(url: str | None) -> bool:
    return bool(url) and urlsplit(url).scheme == "http"


def make_store(location: Location) -> Any:
    """A new obstore store for ``location`` (one per process: stores do not survive a fork)."""
    config, allow_http = store_config(location)
    options = {**CLIENT_OPTIONS, "allow_http": allow_http}
    if location.cloud == "s3":
        return S3Store(
            location.bucket,
            config=config,
            client_options=options,
            retry_config=RETRY,
            credential_provider=_boto3_provider(),
        )
    if location.cloud == "gs":
        return GCSStore(location.bucket, config=config, client_options=options, retry_config=RETRY)
    return AzureStore(location.bucket, config=config, client_options=options, retry_config=RETRY)


def store_config(location: Location) -> tuple[dict[str, str], bool]:
    """(settings obstore does not take from the environment by itself, whether plain http is
    allowed) for ``location``."""
    config: dict[str, str] = {}
    if location.cloud == "s3":
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        if endpoint:
            config["endpoint"] = endpoint
        region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        if region:
            config["region"] = region
        return config, _is_http(endpoint) or _truthy("AWS_ALLOW_HTTP")
    if location.cloud == "gs":
        return config, _truthy("GOOGLE_ALLOW_HTTP")
    config.update(parse_connection_string(os.environ.get("AZURE_STORAGE_CONNECTION_STRING", "")))
    if location.account:
        config["account_name"] = location.account
    endpoint = config.get("endpoint") or os.environ.get("AZURE_STORAGE_ENDPOINT")
    return config, _is_http(endpoint) or _truthy("AZURE_ALLOW_HTTP")


#: obstore's setting names as other object_store users (polars) take them: prefixed per cloud.
_PREFIXED = {
    "s3": {"endpoint": "aws_endpoint_url", "region": "aws_region", "allow_http": "aws_allow_http"},
    "gs": {"allow_http": "google_allow_http"},
    "az": {
        "account_name": "azure_storage_account_name",
        "account_key": "azure_storage_account_key",
        "sas_key": "azure_storage_sas_key",
        "endpoint": "azure_endpoint",
        "allow_http": "azure_allow_http",
    },
}
_FROM_ENV = {
    "s3": {
        "aws_access_key_id": "AWS_ACCESS_KEY_ID",
        "aws_secret_access_key": "AWS_SECRET_ACCESS_KEY",
        "aws_session_token": "AWS_SESSION_TOKEN",
    },
    "gs": {
        "google_service_account": "GOOGLE_SERVICE_ACCOUNT",
        "google_application_credentials": "GOOGLE_APPLICATION_CREDENTIALS",
    },
    "az": {},
}


def reader_options(location: Location) -> dict[str, str]:
    """The same settings (credentials from the environment included) as storage options for
    another object_store-based reader, e.g. ``polars.scan_parquet(url, storage_options=...)``."""
    config, allow_http = store_config(location)
    names = _PREFIXED[location.cloud]
    options = {names[k]: v for k, v in config.items() if k in names}
    if allow_http:
        options[names["allow_http"]] = "true"
    for option, variable in _FROM_ENV[location.cloud].items():
        if os.environ.get(variable):
            options[option] = os.environ[variable]
    return options


def _boto3_provider() -> Any:
    """Profiles, SSO and ``~/.aws`` files, which obstore does not read: through boto3 when the
    variables hold no key and boto3 is installed. Deferred import: boto3 is optional and heavy."""
    if os.environ.get("AWS_ACCESS_KEY_ID") or importlib.util.find_spec("boto3") is None:
        return None
    aws_files = [Path(os.environ.get(v, default)).expanduser() for v, default in _AWS_FILES]
    if not os.environ.get("AWS_PROFILE") and not any(p.is_file() for p in aws_files):
        return None  # obstore's own chain: web identity, container and instance roles
    # botocore says "Found credentials in ..." at INFO on every client it makes.
    logging.getLogger("botocore").setLevel(logging.WARNING)
    from obstore.auth.boto3 import Boto3CredentialProvider

    return Boto3CredentialProvider()


_AWS_FILES = (("AWS_SHARED_CREDENTIALS_FILE", "~/.aws/credentials"), ("AWS_CONFIG_FILE", "~/.aws/config"))


def parse_connection_string(text: str) -> dict[str, str]:
    """An Azure Storage connection string as obstore settings (``account_name``,
    ``account_key``, ``sas_key``, ``endpoint``)."""
    fields = {}
    for part in text.split(";"):
        name, sep, value = part.partition("=")
        if sep:
            fields[name.strip().lower()] = value.strip()
    settings = {}
    for field, setting in (
        ("accountname", "account_name"),
        ("accountkey", "account_key"),
        ("sharedaccesssignature", "sas_key"),
        ("blobendpoint", "endpoint"),
    ):
        if fields.get(field):
            settings[setting] = fields[field]
    if "endpoint" not in settings and "account_name" in settings and fields.get("endpointsuffix"):
        protocol = fields.get("defaultendpointsprotocol", "https")
        settings["endpoint"] = f"{protocol}://{settings['account_name']}.blob.{fields['endpointsuffix']}"
    return settings
