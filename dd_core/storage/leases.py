"""Locks on object storage: a lease object created only if absent, renewed while held, and
taken over (a conditional replace of the version seen) once its holder stopped renewing it.

- Create: ``put(mode="create")`` (``If-None-Match: *``; on GCS ``ifGenerationMatch=0``): exactly
  one of many racing creators wins.
- Renew: every quarter of the lease (``DD_LEASE_SECONDS``, default 60), a replace conditional
  on the holder's own last version; a failed condition means the lease was lost.
- Take over: a lease whose ``expires_at`` passed, that was released, or whose holder was a
  process on this host that no longer exists, is replaced conditionally on the version read, so
  of several processes taking over one stale lease exactly one succeeds.
- Every body holds a fresh nonce: S3's ETag is the body's MD5, and a replace conditional on an
  old ETag would succeed against an identical new body.
- Release: obstore has no conditional delete. The holder deletes its lease only while the
  lease is its own and far from expiry (no one may take over a live lease, so the delete
  cannot hit another's); otherwise it replaces it, conditionally, with a released body that
  the next acquirer takes over.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from contextlib import AbstractContextManager
from typing import Any, Protocol

import obstore
from obstore.exceptions import AlreadyExistsError, BaseError, PreconditionError

from dd_core.log import get_logger
from dd_core.storage.backend import LockHeld, describe_holder, holder_info

log = get_logger(__name__)
#: How often a waiting acquirer looks again.
RETRY_S = 0.5


def lease_seconds() -> float:
    """How long a lock outlives a holder that stops renewing it (``DD_LEASE_SECONDS``, default 60)."""
    return float(os.environ.get("DD_LEASE_SECONDS", "60"))


def update_mode(put_result: dict) -> dict[str, str]:
    """The conditional-replace mode matching a version (obstore refuses ``None`` values)."""
    return {k: put_result[k] for k in ("e_tag", "version") if put_result.get(k)}


def abandoned(info: dict | None) -> bool:
    """The lease was released or expired, or its holder was a process on this host that no
    longer exists."""
    if info is None:
        return False
    if info.get("released") is True:
        return True
    try:
        if float(info.get("expires_at", 0)) < time.time():
            return True
    except (TypeError, ValueError):
        return True  # not a lease dd wrote: nobody renews it
    if info.get("host") != socket.gethostname():
        return False
    try:
        os.kill(int(info["pid"]), 0)
    except ProcessLookupError:
        return True
    except (OSError, KeyError, ValueError, TypeError, OverflowError):
        return False
    return False


class Bucket(Protocol):
    """What a lease needs of its object store (``object_store.ObjectStoreFileSystem``)."""

    store: Any

    def uri(self, path: str) -> str: ...

    def translated(self, path: str, what: str) -> AbstractContextManager[None]: ...


class Lease:
    def __init__(self, fs: Bucket, key: str):
        self.fs = fs
        self.key = key
        self.lease_s = lease_seconds()
        self.mode: dict[str, str] | None = None
        self.lost = False
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    def _body(self, *, released: bool = False) -> bytes:
        expires = 0.0 if released else time.time() + self.lease_s
        return json.dumps(
            {**holder_info(), "nonce": uuid.uuid4().hex, "expires_at": expires, "released": released}
        ).encode()

    def _current(self) -> tuple[dict | None, dict | None]:
        """(body, meta) of the lease object; (None, None) when there is none."""
        try:
            result = obstore.get(self.fs.store, self.key)
            raw = bytes(result.bytes())
        except FileNotFoundError:
            return None, None
        try:
            info = json.loads(raw)
        except ValueError:
            info = {}
        return (info if isinstance(info, dict) else {}), result.meta

    def acquire(self, wait_s: float) -> None:
        deadline = None if wait_s < 0 else time.monotonic() + wait_s
        with self.fs.translated(self.key, "lock"):
            while True:
                try:
                    self.mode = update_mode(obstore.put(self.fs.store, self.key, self._body(), mode="create"))
                    break
                except AlreadyExistsError:
                    pass
                info, meta = self._current()
                if meta is None:
                    continue  # deleted in between: try to create it again
                if abandoned(info):
                    try:
                        self.mode = update_mode(
                            obstore.put(self.fs.store, self.key, self._body(), mode=update_mode(meta))
                        )
                        break
                    except PreconditionError:
                        pass  # another process took it over first
                if deadline is not None and time.monotonic() >= deadline:
                    ends = info.get("expires_at") if info else None
                    until = f" (its lease ends by {time.ctime(float(ends))})" if isinstance(ends, (int, float)) else ""
                    raise LockHeld(describe_holder(info) + until)
                time.sleep(RETRY_S if deadline is None else max(0.0, min(RETRY_S, deadline - time.monotonic())))
        self._renewer = threading.Thread(target=self._renew, name=f"dd-lease-{self.key}", daemon=True)
        self._renewer.start()

    def _renew(self) -> None:
        while not self._stop.wait(self.lease_s / 4):
            try:
                self.mode = update_mode(obstore.put(self.fs.store, self.key, self._body(), mode=self.mode))
            except PreconditionError:
                self.lost = True
                log.warning("the lock %s was taken over by another process", self.fs.uri(self.key))
                return
            except BaseError as exc:  # a network blip: the next renewal tries again
                log.debug("could not renew %s: %s", self.fs.uri(self.key), exc)

    def release(self) -> None:
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join()
        if self.lost or self.mode is None:
            return
        try:
            info, meta = self._current()
            if meta is None or update_mode(meta) != self.mode:
                return  # not ours any more
            if float(info.get("expires_at", 0)) - time.time() > self.lease_s / 2:
                obstore.delete(self.fs.store, self.key)
            else:
                obstore.put(self.fs.store, self.key, self._body(released=True), mode=self.mode)
        except PreconditionError:
            pass  # taken over meanwhile: it is the new holder's
        except (BaseError, OSError) as exc:
            log.warning("could not release the lock %s (it expires by itself): %s", self.fs.uri(self.key), exc)
