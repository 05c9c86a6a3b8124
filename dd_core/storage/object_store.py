"""Dataset folders on S3, GCS and Azure Blob, through obstore.

- Objects appear whole or not at all: one PUT per file (multipart only past
  ``SINGLE_PUT_BYTES``, completed atomically; an interrupted one leaves no object, only
  invisible parts that a bucket lifecycle rule removes).
- Locks and row-group claims are leases (``leases``).
- Append-only logs (the LLM response cache) are a prefix ``<name>.log/`` holding one new object
  per flush, created only if absent (two writers never overwrite each other); readers list the
  prefix and read the objects in name order.

Picklable: each process makes its own client (obstore's runtime does not survive a fork).
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import IO, Any

import obstore
from obstore.exceptions import AlreadyExistsError

from dd_core.redaction import register
from dd_core.storage.backend import FileSystem, LogAppender
from dd_core.storage.cloud_stores import Location, make_store
from dd_core.storage.faults import fault_point
from dd_core.storage.leases import Lease
from dd_core.storage.object_errors import translated
from dd_core.storage.object_files import open_object

#: Files up to this size are sent in one PUT (S3 allows 5 GB); larger ones in parts.
SINGLE_PUT_BYTES = 256 * 2**20
PART_BYTES = 16 * 2**20

_SECRETS = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AZURE_STORAGE_ACCOUNT_KEY", "AZURE_STORAGE_SAS_KEY")


class ObjectStoreFileSystem(FileSystem):
    """One bucket (or container); paths are keys in it."""

    def __init__(self, location: Location):
        self.location = location
        self._store: Any = None
        self._pid = -1

    def __getstate__(self) -> dict:
        return {"location": self.location}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["location"])

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ObjectStoreFileSystem) and other.location == self.location

    def __hash__(self) -> int:
        return hash(self.location)

    @property
    def store(self) -> Any:
        if self._store is None or self._pid != os.getpid():
            for name in _SECRETS:
                register(os.environ.get(name))
            with translated(self.location.prefix, "configure access to", self.location.cloud, self.location.bucket):
                self._store = make_store(self.location)
            self._pid = os.getpid()
        return self._store

    def uri(self, path: str) -> str:
        return f"{self.location.prefix}/{path}" if path else self.location.prefix

    def translated(self, path: str, what: str, *, missing_ok: bool = False) -> AbstractContextManager[None]:
        return translated(self.uri(path), what, self.location.cloud, self.location.bucket, missing_ok=missing_ok)

    def head(self, path: str) -> dict:
        """The object's size, ETag and version (FileNotFoundError when absent)."""
        with self.translated(path, "read", missing_ok=True):
            return obstore.head(self.store, path)

    def read_bytes(self, path: str) -> bytes:
        with self.translated(path, "read", missing_ok=True):
            return bytes(obstore.get(self.store, path).bytes())

    def open_for_arrow(self, path: str) -> IO[bytes]:
        # Azure serves no suffix ranges: a HEAD first tells the size there.
        meta = self.head(path) if self.location.cloud == "az" else None
        with self.translated(path, "read", missing_ok=True):
            return open_object(self.store, path, self.uri(path), meta)

    def content_version(self, path: str) -> str:
        meta = self.head(path)
        return str(meta.get("version") or meta.get("e_tag") or meta["last_modified"].isoformat())

    def write_atomic(self, path: str, data: bytes, fault_prefix: str, sync_folder: bool = True) -> None:
        fault_point(f"{fault_prefix}_tmp_written")
        with self.translated(path, "write"):
            obstore.put(self.store, path, data, use_multipart=len(data) > SINGLE_PUT_BYTES, chunk_size=PART_BYTES)
        fault_point(f"{fault_prefix}_renamed")

    def create_new(self, path: str, data: bytes) -> bool:
        """Write ``data`` only if nothing is at ``path``; False when something is."""
        with self.translated(path, "write"):
            try:
                obstore.put(self.store, path, data, mode="create")
            except AlreadyExistsError:
                return False
        return True

    def exists(self, path: str) -> bool:
        try:
            self.head(path)
            return True
        except FileNotFoundError:
            return bool(self.list_names(path))  # a "folder" exists when something is inside

    def list_names(self, folder: str) -> list[str]:
        prefix = folder.rstrip("/") + "/" if folder else ""
        with self.translated(folder, "list"):
            listing = obstore.list_with_delimiter(self.store, prefix or None)
        names = [meta["path"][len(prefix) :] for meta in listing["objects"]]
        return names + [p[len(prefix) :].rstrip("/") for p in listing["common_prefixes"]]

    def list_keys(self, folder: str) -> Iterator[str]:
        """Every key under ``folder``, recursively (in batches of 1,000 from the server)."""
        prefix = folder.rstrip("/") + "/" if folder else ""
        with self.translated(folder, "list"):
            for batch in obstore.list(self.store, prefix or None, chunk_size=1000):
                yield from (meta["path"] for meta in batch)

    def sync_folder(self, folder: str) -> None:
        pass  # a PUT is durable when it returns

    def unlink(self, path: str) -> None:
        with self.translated(path, "delete"):
            obstore.delete(self.store, path)

    def publish(self, local_file: Path, path: str) -> None:
        size = local_file.stat().st_size
        with self.translated(path, "write"):
            if size <= SINGLE_PUT_BYTES:
                fault_point("publish_tmp_written")
                obstore.put(self.store, path, local_file.read_bytes(), use_multipart=False)
            else:
                obstore.put(self.store, path, _parts(local_file), chunk_size=PART_BYTES, max_concurrency=4)
        local_file.unlink()

    @contextmanager
    def lock(self, path: str, *, wait_s: float) -> Iterator[None]:
        lease = Lease(self, path)
        lease.acquire(wait_s)
        try:
            yield
        finally:
            lease.release()

    def read_log(self, path: str) -> Iterator[bytes]:
        for key in sorted(self.list_keys(path + ".log")):
            try:
                yield from self.read_bytes(key).splitlines(keepends=True)
            except FileNotFoundError:
                continue  # compacted away meanwhile

    def log_appender(self, path: str) -> LogAppender:
        return _ObjectLogAppender(self, path + ".log")


def _parts(local_file: Path) -> Iterator[bytes]:
    with open(local_file, "rb") as fh:
        for number, chunk in enumerate(iter(lambda: fh.read(PART_BYTES), b"")):
            yield chunk
            if number == 0:
                fault_point("publish_partial")  # a kill here leaves parts, never an object


class _ObjectLogAppender(LogAppender):
    """Lines buffered and written as one new object per flush (objects cannot grow)."""

    sync_interval_s = 2.0

    def __init__(self, fs: ObjectStoreFileSystem, folder: str):
        self._fs = fs
        self._folder = folder
        self._lines: list[bytes] = []

    def append(self, line: bytes) -> None:
        self._lines.append(line)

    def sync(self) -> None:
        """May run in another thread while lines are appended: it takes the buffer first."""
        lines, self._lines = self._lines, []
        if lines:
            name = f"{time.time_ns():020d}-{os.getpid()}-{uuid.uuid4().hex[:8]}.jsonl"
            self._fs.create_new(f"{self._folder}/{name}", b"".join(lines))

    def close(self) -> None:
        self.sync()
