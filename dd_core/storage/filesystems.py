"""Where dataset folders live: a local disk (``local_disk``) or an object store
(``object_store``: ``s3://``, ``gs://``, ``az://`` and ``abfs[s]://``), each keeping the promises
of ``backend.FileSystem``. The rest of dd speaks to ``StoragePath`` only.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import IO

from dd_core.errors import DDUsageError
from dd_core.storage.atomic import create_new, storage_failure, temp_path_for
from dd_core.storage.backend import FileSystem, LogAppender
from dd_core.storage.cloud_stores import Location, parse_location
from dd_core.storage.local_disk import LocalFileSystem
from dd_core.storage.object_store import ObjectStoreFileSystem

_LOCAL = LocalFileSystem()


@lru_cache(maxsize=64)
def _object_store(location: Location) -> ObjectStoreFileSystem:
    """One per bucket and process, so its client and connections are reused."""
    return ObjectStoreFileSystem(location)


@dataclass(frozen=True)
class StoragePath:
    """A file or folder on one of the backends, used like a ``pathlib.Path``."""

    fs: FileSystem
    path: str

    def __truediv__(self, part: str) -> StoragePath:
        return StoragePath(self.fs, f"{self.path.rstrip('/')}/{part}" if self.path else part)

    def __str__(self) -> str:
        return self.fs.uri(self.path)

    @property
    def name(self) -> str:
        return self.path.rstrip("/").rsplit("/", 1)[-1]

    @property
    def parent(self) -> StoragePath:
        head, sep, _ = self.path.rstrip("/").rpartition("/")
        return StoragePath(self.fs, head if sep else "")

    def with_name(self, name: str) -> StoragePath:
        return self.parent / name

    @property
    def is_local(self) -> bool:
        return self.fs.is_local

    @property
    def local(self) -> Path:
        """The local path (only for local storage)."""
        if not self.is_local:
            raise ValueError(f"{self} is not on the local disk")
        return Path(self.path)

    def read_bytes(self) -> bytes:
        return self.fs.read_bytes(self.path)

    def read_text(self) -> str:
        return self.read_bytes().decode("utf-8")

    @contextlib.contextmanager
    def open_arrow(self) -> Iterator[str | IO[bytes]]:
        """Something pyarrow's parquet readers accept, read in the ranges they ask for (a footer
        costs a few small reads, not the file)."""
        source = self.fs.open_for_arrow(self.path)
        try:
            yield source
        finally:
            if not isinstance(source, str):
                source.close()

    def content_version(self) -> str:
        """What identifies the content: a sha256 on disk, the ETag or generation on object storage."""
        return self.fs.content_version(self.path)

    def write_atomic(self, data: bytes, fault_prefix: str = "file", *, sync_folder: bool = True) -> None:
        self.fs.write_atomic(self.path, data, fault_prefix, sync_folder)

    def exists(self) -> bool:
        return self.fs.exists(self.path)

    def list_names(self) -> list[str]:
        return self.fs.list_names(self.path)

    def unlink(self) -> None:
        self.fs.unlink(self.path)

    def publish(self, local_file: Path) -> None:
        self.fs.publish(local_file, self.path)

    def lock(self, wait_s: float = -1) -> AbstractContextManager[None]:
        return self.fs.lock(self.path, wait_s=wait_s)

    def remove_temp_files(self) -> list[str]:
        return self.fs.remove_temp_files(self.path)

    def sync_folder(self) -> None:
        """This folder's names written so far made durable (a local folder's fsync)."""
        self.fs.sync_folder(self.path)

    def read_log(self) -> Iterator[bytes]:
        return self.fs.read_log(self.path)

    def log_appender(self) -> LogAppender:
        return self.fs.log_appender(self.path)


class UnsupportedLocation(DDUsageError, ValueError):
    """A location that is neither a local path nor an object-store URL (exit 2)."""


def storage_path(location: str | os.PathLike | StoragePath) -> StoragePath:
    """``s3://bucket/prefix``, ``gs://...``, ``az://container/...`` (``abfs[s]://``) or a local
    path (made absolute)."""
    if isinstance(location, StoragePath):
        return location
    text = os.fspath(location)
    if "\x00" in text:
        raise UnsupportedLocation(f"the path {text[:100]!r} contains a NUL character")
    try:
        parsed = parse_location(text)
    except ValueError as exc:
        raise UnsupportedLocation(str(exc)) from exc
    if parsed is not None:
        location_, key = parsed
        return StoragePath(_object_store(location_), key)
    if "://" in text:
        raise UnsupportedLocation(
            f"unsupported storage location {text[:200]!r}: use a local path, s3://bucket/prefix, gs://bucket/prefix "
            "or az://container/prefix"
        )
    return StoragePath(_LOCAL, os.path.abspath(text))


def local_temp_file(like: StoragePath) -> Path:
    """A temp file to build a large output in before ``publish``: beside it when local
    (created new: a link planted under its name is replaced, never written through)."""
    if like.is_local:
        tmp = temp_path_for(like.local)
        try:
            like.local.parent.mkdir(parents=True, exist_ok=True)
            os.close(create_new(tmp))
        except OSError as exc:
            raise storage_failure(like, exc) from exc
        return tmp
    fd, name = tempfile.mkstemp(prefix=".dd-", suffix=".tmp")
    os.close(fd)
    return Path(name)
