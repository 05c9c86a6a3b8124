"""obstore's errors as one message a person can act on (``StorageError``, exit 6).

obstore raises one class per outcome: ``FileNotFoundError`` (a missing object on a read, a
missing bucket on a write), ``PermissionDeniedError`` / ``UnauthenticatedError`` (credentials),
``GenericError`` (unreachable, a plain-HTTP endpoint not allowed, anything else). Its text
carries a multi-line Rust ``Debug`` block: only the first line is shown, query strings (a SAS
token) are cut, and known secrets scrubbed.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

from obstore.exceptions import BaseError, PermissionDeniedError, UnauthenticatedError

from dd_core.errors import StorageError
from dd_core.redaction import scrub

_QUERY = re.compile(r"\?[^\s\"')]*")

_CREDENTIALS = {
    "s3": "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN for temporary ones), or AWS_PROFILE",
    "gs": "GOOGLE_APPLICATION_CREDENTIALS or GOOGLE_SERVICE_ACCOUNT",
    "az": "AZURE_STORAGE_CONNECTION_STRING, or AZURE_STORAGE_ACCOUNT_NAME and AZURE_STORAGE_ACCOUNT_KEY",
}
_ALLOW_HTTP = {"s3": "AWS_ALLOW_HTTP", "gs": "GOOGLE_ALLOW_HTTP", "az": "AZURE_ALLOW_HTTP"}


_STATUS = re.compile(r"status code: (\d{3}[^:<]*)")


def cause_of(exc: BaseException) -> str:
    """The server's answer ("the server answered 403 Forbidden"), else the error's first line."""
    lines = str(exc).strip().splitlines()
    first = scrub(_QUERY.sub("", lines[0] if lines else type(exc).__name__))
    status = _STATUS.search(first)
    if status:
        return f"the server answered {status.group(1).strip()}"
    return first.rsplit(" - ", 1)[-1][:300]


def storage_error(exc: BaseException, uri: str, what: str, cloud: str, bucket: str) -> StorageError:
    """One message for a failed object-store call ``what`` on ``uri``."""
    cause = cause_of(exc)
    if isinstance(exc, (PermissionDeniedError, UnauthenticatedError)):
        hint = f"access denied: check the credentials ({_CREDENTIALS[cloud]}); they may have expired"
    elif isinstance(exc, FileNotFoundError) or "NoSuchBucket" in str(exc) or "ContainerNotFound" in str(exc):
        hint = f"the bucket or container {bucket!r} does not exist; create it first"
    elif "builder error" in str(exc) or "URL scheme is not allowed" in str(exc):
        hint = f"the endpoint is plain http://; set {_ALLOW_HTTP[cloud]}=true to allow it"
    elif "error sending request" in str(exc) or "connect" in str(exc).lower():
        hint = "the storage endpoint could not be reached; check the endpoint and the network"
    else:
        hint = ""
    return StorageError(
        f"could not {what} {uri}: {cause}{f' ({hint})' if hint else ''}. Finished files are unchanged; fix the cause, then run the "
        "same command again (or 'ddsynth resume DIR')"
    )


@contextmanager
def translated(uri: str, what: str, cloud: str, bucket: str, *, missing_ok: bool = False) -> Iterator[None]:
    """obstore errors inside as ``StorageError``; ``FileNotFoundError`` passes through when
    ``missing_ok`` (a read of an object that is not there)."""
    try:
        yield
    except FileNotFoundError as exc:
        if missing_ok:
            raise FileNotFoundError(uri) from exc
        raise storage_error(exc, uri, what, cloud, bucket) from exc
    except BaseError as exc:
        raise storage_error(exc, uri, what, cloud, bucket) from exc
