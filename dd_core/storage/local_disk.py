"""Dataset folders on the local disk: dd's own crash-safe writes (temp file, fsync, atomic
rename, folder fsync; see ``atomic``), OS file locks the kernel releases when their holder dies,
and append-only logs written line by line.

Nothing is written through a symbolic link planted where dd writes.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

from dd_core.errors import DatasetDamagedError
from dd_core.storage.atomic import atomic_write, create_new, fsync_dir, remove_temp_files, storage_failure
from dd_core.storage.backend import FileSystem, LockHeld, LogAppender, describe_holder, holder_info


def regular_or_absent(path: str) -> None:
    """Refuse to read a FIFO, device or directory planted where dd expects a file (reading a
    FIFO would block forever)."""
    mode = os.stat(path).st_mode
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
    is_local = True

    def uri(self, path: str) -> str:
        return path

    def read_bytes(self, path: str) -> bytes:
        regular_or_absent(path)
        return Path(path).read_bytes()

    def open_for_arrow(self, path: str) -> str:
        regular_or_absent(path)  # arrow would block forever opening a FIFO
        return path

    def content_version(self, path: str) -> str:
        regular_or_absent(path)
        digest = hashlib.sha256()
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
        return digest.hexdigest()

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
            regular_or_absent(path)
            with open(path, "rb") as fh:
                yield from fh
        except FileNotFoundError:
            return

    def log_appender(self, path: str) -> LogAppender:
        return _LocalAppender(path)

    def remove_temp_files(self, folder: str) -> list[str]:
        return remove_temp_files(Path(folder))

    def sync_folder(self, folder: str) -> None:
        try:
            fsync_dir(Path(folder))
        except FileNotFoundError:
            return  # nothing was written there
        except OSError as exc:
            raise storage_failure(folder, exc, "sync") from exc


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
        regular_or_absent(str(path))
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
