"""Where dataset folders live: a local disk or an S3-compatible object store.

The storage layer speaks to ``StoragePath`` only. Each backend keeps the same promises:
- ``write_atomic``: readers see the old content or the new, never a mix (local: temp file,
  fsync, rename; S3: a single PUT, which appears whole or not at all);
- ``lock``: one holder at a time, and a killed holder does not block forever (local: an OS
  file lock, released by the kernel; S3: a lease object created with a conditional PUT and
  renewed while held, which another process may take over once it has expired);
- append-only logs (the LLM response cache): local, one file appended line by line; S3, one
  object per flush (at most ``sync_interval_s`` of calls can be lost to a crash).

S3 settings come from the usual AWS variables (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
``AWS_REGION``, and ``AWS_ENDPOINT_URL`` for S3-compatible servers).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import stat
import sys
import tempfile
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dd_core.errors import DatasetDamagedError, DDUsageError
from dd_core.storage.atomic import (
    atomic_write,
    create_new,
    fsync_dir,
    remove_temp_files,
    storage_failure,
    temp_path_for,
)
from dd_core.storage.faults import fault_point

if TYPE_CHECKING:
    import pyarrow as pa


class LockHeld(Exception):
    """The lock is held by someone else; ``holder`` says who, as far as known."""

    def __init__(self, holder: str):
        super().__init__(holder)
        self.holder = holder


def holder_info() -> dict:
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "since": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": " ".join(sys.argv)[:300],
    }


def describe_holder(info: dict | None) -> str:
    if not info:
        return "holder unknown"
    return f"pid {info.get('pid')} on {info.get('host')} since {info.get('since')}: {info.get('command')}"


class FileSystem(ABC):
    @abstractmethod
    def uri(self, path: str) -> str: ...

    @abstractmethod
    def read_bytes(self, path: str) -> bytes:
        """Raises FileNotFoundError when there is nothing at ``path``."""

    @abstractmethod
    def write_atomic(self, path: str, data: bytes, fault_prefix: str, sync_folder: bool = True) -> None:
        """See ``atomic.atomic_write`` (``sync_folder``: local folders only)."""

    @abstractmethod
    def exists(self, path: str) -> bool: ...

    @abstractmethod
    def list_names(self, folder: str) -> list[str]:
        """Names directly inside ``folder`` (files and sub-folders); empty when it is absent."""

    @abstractmethod
    def unlink(self, path: str) -> None: ...

    @abstractmethod
    def publish(self, local_file: Path, path: str) -> None:
        """Move a finished local file to ``path`` atomically (it disappears locally)."""

    @abstractmethod
    def lock(self, path: str, *, wait_s: float) -> AbstractContextManager[None]:
        """Hold the lock at ``path``; wait up to ``wait_s`` (-1: forever, 0: fail at once)."""

    @abstractmethod
    def read_log(self, path: str) -> Iterator[bytes]: ...

    @abstractmethod
    def log_appender(self, path: str) -> LogAppender: ...

    def remove_temp_files(self, folder: str) -> list[str]:
        return []


class LogAppender(ABC):
    #: How often its owner should call ``sync`` (the most a crash can lose on object storage).
    sync_interval_s = 0.5

    @abstractmethod
    def append(self, line: bytes) -> None: ...

    @abstractmethod
    def sync(self) -> None: ...

    @abstractmethod
    def close(self) -> None: ...


def _regular_or_absent(path: str) -> None:
    """Refuse to read a FIFO, device or directory planted where dd expects a file (reading a
    FIFO would block forever)."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise
    if stat.S_ISDIR(mode):
        raise IsADirectoryError(errno.EISDIR, "is a directory", path)
    if not stat.S_ISREG(mode):
        raise OSError(errno.EINVAL, "not a regular file", path)


def refuse_link_or_odd(path: str, what: str) -> None:
    """A path dd writes into must be absent or a regular file, never a symlink (a planted link
    would make dd write into whatever it points to, e.g. a finished row group)."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if stat.S_ISLNK(mode):
        raise DatasetDamagedError(
            f"{what} {path} is a symbolic link (to {os.readlink(path)}); dd never writes through a link. "
            "Nothing was changed; remove the link and run again"
        )
    if not stat.S_ISREG(mode):
        kind = "a directory" if stat.S_ISDIR(mode) else "not a regular file"
        raise DatasetDamagedError(f"{what} {path} is {kind}; nothing was changed. Remove it and run again")


class LocalFileSystem(FileSystem):
    def uri(self, path: str) -> str:
        return path

    def read_bytes(self, path: str) -> bytes:
        _regular_or_absent(path)
        return Path(path).read_bytes()

    def write_atomic(self, path: str, data: bytes, fault_prefix: str, sync_folder: bool = True) -> None:
        atomic_write(Path(path), data, fault_prefix=fault_prefix, sync_folder=sync_folder)

    def exists(self, path: str) -> bool:
        return os.path.exists(path)

    def list_names(self, folder: str) -> list[str]:
        try:
            return [entry.name for entry in os.scandir(folder)]
        except FileNotFoundError:
            return []

    def unlink(self, path: str) -> None:
        Path(path).unlink(missing_ok=True)

    def publish(self, local_file: Path, path: str) -> None:
        try:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            os.replace(local_file, path)
            fsync_dir(Path(path).parent)
        except OSError as exc:
            raise storage_failure(path, exc) from exc

    @contextmanager
    def lock(self, path: str, *, wait_s: float) -> Iterator[None]:
        from filelock import FileLock, Timeout

        holder_file = path + ".json"
        try:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise storage_failure(Path(path).parent, exc, "create") from exc
        refuse_link_or_odd(path, "the lock file")
        refuse_link_or_odd(holder_file, "the lock's holder file")
        # Not bound to a thread: a row-group claim is taken where a row group is prepared and
        # released where it is written (different threads of the producer).
        lock = FileLock(path, timeout=wait_s, thread_local=False)
        try:
            lock.acquire()
        except Timeout as exc:
            raise LockHeld(describe_holder(_read_json(Path(holder_file)))) from exc
        except OSError as exc:
            raise storage_failure(path, exc, "lock") from exc
        try:
            _write_holder(holder_file)
            yield
        finally:
            with contextlib.suppress(OSError):
                os.unlink(holder_file)
            lock.release()

    def read_log(self, path: str) -> Iterator[bytes]:
        try:
            _regular_or_absent(path)
            with open(path, "rb") as fh:
                yield from fh
        except FileNotFoundError:
            return

    def log_appender(self, path: str) -> LogAppender:
        return _LocalAppender(path)

    def remove_temp_files(self, folder: str) -> list[str]:
        return remove_temp_files(Path(folder))


def _write_holder(path: str) -> None:
    """Who holds the lock, in a file created new (never through a link planted under its name)."""
    try:
        fd = create_new(Path(path))
        with os.fdopen(fd, "w") as fh:
            fh.write(json.dumps(holder_info()))
    except OSError:
        pass  # the holder note is informative only; the lock itself is held


def _read_json(path: Path) -> dict | None:
    try:
        _regular_or_absent(str(path))
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


class _LocalAppender(LogAppender):
    """One ``os.write`` per line (a SIGKILL loses nothing written); fsync on ``sync``.

    Opened without following a symlink: a planted link must not turn the cache into a writer
    of whatever it points to."""

    def __init__(self, path: str):
        self._path = path
        try:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(
                path,
                os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0),
                0o644,
            )
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                refuse_link_or_odd(path, "the LLM cache file")
            raise storage_failure(path, exc) from exc
        if not stat.S_ISREG(os.fstat(self._fd).st_mode):
            os.close(self._fd)
            refuse_link_or_odd(path, "the LLM cache file")

    def append(self, line: bytes) -> None:
        try:
            os.write(self._fd, line)
        except OSError as exc:
            raise storage_failure(self._path, exc) from exc

    def sync(self) -> None:
        try:
            os.fsync(self._fd)
        except OSError as exc:
            raise storage_failure(self._path, exc) from exc

    def close(self) -> None:
        try:
            os.fsync(self._fd)
        except OSError as exc:
            raise storage_failure(self._path, exc) from exc
        finally:
            os.close(self._fd)


class S3FileSystem(FileSystem):
    """An S3 bucket through boto3. Picklable: the client is made again in each process."""

    @property
    def lease_s(self) -> float:
        """How long a lock outlives a holder that stops renewing it (DD_S3_LEASE_SECONDS, default 60)."""
        return float(os.environ.get("DD_S3_LEASE_SECONDS", "60"))

    def __init__(self) -> None:
        self._client = None

    def __getstate__(self) -> dict:
        return {}

    def __setstate__(self, state: dict) -> None:
        self._client = None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, S3FileSystem)

    def __hash__(self) -> int:
        return hash(S3FileSystem)

    @property
    def client(self) -> Any:  # a boto3 S3 client
        if self._client is None:
            import boto3

            self._client = boto3.client("s3")
        return self._client

    @staticmethod
    def _split(path: str) -> tuple[str, str]:
        bucket, _, key = path.partition("/")
        return bucket, key

    def uri(self, path: str) -> str:
        return f"s3://{path}"

    def read_bytes(self, path: str) -> bytes:
        bucket, key = self._split(path)
        try:
            return self.client.get_object(Bucket=bucket, Key=key)["Body"].read()
        except self.client.exceptions.NoSuchKey as exc:
            raise FileNotFoundError(self.uri(path)) from exc

    def write_atomic(self, path: str, data: bytes, fault_prefix: str, sync_folder: bool = True) -> None:
        bucket, key = self._split(path)
        fault_point(f"{fault_prefix}_tmp_written")
        self.client.put_object(Bucket=bucket, Key=key, Body=data)
        fault_point(f"{fault_prefix}_renamed")

    def exists(self, path: str) -> bool:
        from botocore.exceptions import ClientError

        bucket, key = self._split(path)
        try:
            self.client.head_object(Bucket=bucket, Key=key)
            return True
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return bool(self.list_names(path))  # a "folder" exists when something is inside
            raise

    def list_names(self, folder: str) -> list[str]:
        bucket, key = self._split(folder)
        prefix = key.rstrip("/") + "/" if key else ""
        names = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix, Delimiter="/"):
            names += [obj["Key"][len(prefix) :] for obj in page.get("Contents", [])]
            names += [p["Prefix"][len(prefix) :].rstrip("/") for p in page.get("CommonPrefixes", [])]
        return names

    def unlink(self, path: str) -> None:
        bucket, key = self._split(path)
        self.client.delete_object(Bucket=bucket, Key=key)

    def publish(self, local_file: Path, path: str) -> None:
        bucket, key = self._split(path)
        self.client.upload_file(str(local_file), bucket, key)  # multipart completes atomically
        local_file.unlink()

    @contextmanager
    def lock(self, path: str, *, wait_s: float) -> Iterator[None]:
        lease = _Lease(self, path)
        lease.acquire(wait_s)
        try:
            yield
        finally:
            lease.release()

    def read_log(self, path: str) -> Iterator[bytes]:
        folder = path + ".log"
        for name in sorted(self.list_names(folder)):
            yield from self.read_bytes(f"{folder}/{name}").splitlines(keepends=True)

    def log_appender(self, path: str) -> LogAppender:
        return _S3Appender(self, path + ".log")


class _S3Appender(LogAppender):
    """Lines buffered and written as one new object per flush (S3 objects cannot grow)."""

    sync_interval_s = 2.0

    def __init__(self, fs: S3FileSystem, folder: str):
        self._fs = fs
        self._folder = folder
        self._lines: list[bytes] = []

    def append(self, line: bytes) -> None:
        self._lines.append(line)

    def sync(self) -> None:
        """May run in another thread while lines are appended: it takes the buffer first."""
        lines, self._lines = self._lines, []
        if lines:
            name = f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.jsonl"
            self._fs.write_atomic(f"{self._folder}/{name}", b"".join(lines), fault_prefix="llm_cache")

    def close(self) -> None:
        self.sync()


class _Lease:
    """A lock on S3: an object created only if absent (``If-None-Match: *``), renewed while held,
    and taken over (``If-Match`` on the expired version) once its holder stopped renewing."""

    def __init__(self, fs: S3FileSystem, path: str):
        self.fs = fs
        self.bucket, self.key = fs._split(path)
        self.etag: str | None = None
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    def _body(self) -> bytes:
        return json.dumps({**holder_info(), "expires_at": time.time() + self.fs.lease_s}).encode()

    def _put(self, **condition) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.etag = self.fs.client.put_object(Bucket=self.bucket, Key=self.key, Body=self._body(), **condition)[
                "ETag"
            ]
            return True
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in (
                "PreconditionFailed",
                "412",
                "ConditionalRequestConflict",
                "NoSuchKey",
            ):
                return False
            raise

    def _current(self) -> tuple[dict | None, str | None]:
        try:
            response = self.fs.client.get_object(Bucket=self.bucket, Key=self.key)
        except self.fs.client.exceptions.NoSuchKey:
            return None, None
        try:
            return json.loads(response["Body"].read()), response["ETag"]
        except ValueError:
            return {}, response["ETag"]

    def acquire(self, wait_s: float) -> None:
        deadline = None if wait_s < 0 else time.monotonic() + wait_s
        while True:
            if self._put(IfNoneMatch="*"):
                break
            info, etag = self._current()
            if etag is not None and _abandoned(info) and self._put(IfMatch=etag):
                break
            if deadline is not None and time.monotonic() >= deadline:
                raise LockHeld(
                    describe_holder(info)
                    + (
                        f" (its lease ends by {time.ctime(float(info['expires_at']))})"
                        if info and "expires_at" in info
                        else ""
                    )
                )
            time.sleep(0.5)
        self._renewer = threading.Thread(target=self._renew, name=f"dd-lease-{self.key}", daemon=True)
        self._renewer.start()

    def _renew(self) -> None:
        while not self._stop.wait(self.fs.lease_s / 4):
            if not self._put(IfMatch=self.etag):
                return  # lost (we stalled past the lease): the next holder owns it now

    def release(self) -> None:
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join()
        info, etag = self._current()
        if etag == self.etag:
            self.fs.client.delete_object(Bucket=self.bucket, Key=self.key)


def _abandoned(info: dict | None) -> bool:
    """The lease expired, or its holder was a process on this host that no longer exists."""
    if info is None:
        return False
    if float(info.get("expires_at", 0)) < time.time():
        return True
    if info.get("host") != socket.gethostname():
        return False
    try:
        os.kill(int(info["pid"]), 0)
    except ProcessLookupError:
        return True
    except (OSError, KeyError, ValueError):
        return False
    return False


_LOCAL = LocalFileSystem()
_S3 = S3FileSystem()


@dataclass(frozen=True)
class StoragePath:
    """A file or folder on one of the backends, used like a ``pathlib.Path``."""

    fs: FileSystem
    path: str

    def __truediv__(self, part: str) -> StoragePath:
        return StoragePath(self.fs, f"{self.path.rstrip('/')}/{part}")

    def __str__(self) -> str:
        return self.fs.uri(self.path)

    @property
    def name(self) -> str:
        return self.path.rstrip("/").rsplit("/", 1)[-1]

    @property
    def parent(self) -> StoragePath:
        return StoragePath(self.fs, self.path.rstrip("/").rsplit("/", 1)[0])

    def with_name(self, name: str) -> StoragePath:
        return self.parent / name

    @property
    def is_local(self) -> bool:
        return isinstance(self.fs, LocalFileSystem)

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

    def arrow_source(self) -> str | pa.BufferReader:
        """Something pyarrow's parquet readers accept: the path when local (footers are read
        without reading the file), the object's bytes otherwise."""
        import pyarrow as pa

        if self.is_local:
            _regular_or_absent(self.path)  # arrow would block forever opening a FIFO
            return self.path
        return pa.BufferReader(self.read_bytes())

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

    def read_log(self) -> Iterator[bytes]:
        return self.fs.read_log(self.path)

    def log_appender(self) -> LogAppender:
        return self.fs.log_appender(self.path)


def storage_path(location: str | os.PathLike | StoragePath) -> StoragePath:
    """``s3://bucket/prefix`` or a local path (made absolute)."""
    if isinstance(location, StoragePath):
        return location
    text = os.fspath(location)
    if "\x00" in text:
        raise UnsupportedLocation(f"the path {text[:100]!r} contains a NUL character")
    if text.startswith("s3://"):
        if not text[len("s3://") :].strip("/"):
            raise UnsupportedLocation(f"{text!r} names no bucket: use s3://bucket/prefix")
        return StoragePath(_S3, text[len("s3://") :].rstrip("/"))
    if "://" in text:
        raise UnsupportedLocation(
            f"unsupported storage location {text[:200]!r}: use a local path or s3://bucket/prefix"
        )
    return StoragePath(_LOCAL, os.path.abspath(text))


class UnsupportedLocation(DDUsageError, ValueError):
    """A location that is neither a local path nor ``s3://bucket/prefix`` (exit 2)."""


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
