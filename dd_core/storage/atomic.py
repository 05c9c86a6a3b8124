"""Crash-safe file replacement: temp file in the same folder, fsync, atomic rename, fsync folder.

Temp files are created new (``O_EXCL``) without following a symlink planted under their name,
and removed again when the write fails (full disk, read-only file system, Ctrl-C), so a failed
write leaves the old file and nothing else. A failure is a ``StorageError`` naming the file.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from dd_core.errors import StorageError
from dd_core.storage.faults import fault_point

TMP_MARK = ".tmp-"
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)

_HINTS = {
    errno.ENOSPC: "the disk is full; free some space",
    errno.EDQUOT: "the disk quota is used up; free some space",
    errno.EROFS: "the file system is read-only; use a writable folder",
    errno.EACCES: "permission denied; check the folder's permissions",
    errno.EPERM: "permission denied; check the folder's permissions",
    errno.EFBIG: "the file is larger than this process may write (ulimit -f)",
    errno.ENAMETOOLONG: "the path is too long; use a shorter folder or dataset name",
}


def storage_failure(path: object, exc: OSError, what: str = "write") -> StorageError:
    """One message for an OS error while writing: the file, the cause, what to do."""
    hint = _HINTS.get(exc.errno or 0, exc.strerror or str(exc))
    return StorageError(
        f"could not {what} {path}: {exc.strerror or exc} ({hint}). Nothing half-written was left and finished "
        "files are unchanged; fix the cause, then run the same command again (or 'ddsynth resume DIR')"
    )


def temp_path_for(path: Path) -> Path:
    return path.with_name(f".{path.name}{TMP_MARK}{os.getpid()}")


def is_temp_file(name: str) -> bool:
    return name.startswith(".") and TMP_MARK in name


def create_new(path: Path) -> int:
    """Open a new file for writing; whatever had its name (a stale temp file, a planted symlink)
    is unlinked first, never written through."""
    try:
        return os.open(path, _NEW_FILE, 0o644)
    except FileExistsError:
        os.unlink(path)  # removes a symlink itself, not its target
        return os.open(path, _NEW_FILE, 0o644)


def discard(path: Path) -> None:
    """Remove a temp file if it is there; never fails (a read-only file system refuses even to
    unlink what does not exist, and the original error is the one to report)."""
    try:
        os.unlink(path)
    except OSError:
        pass


def fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes, *, fault_prefix: str = "file", sync_folder: bool = True) -> None:
    """Replace ``path`` with ``data``: readers see the old file or the new one, never a mix.

    ``sync_folder=False`` leaves the rename to the folder's next fsync (the file system's next
    commit): after a power loss before it, ``path`` holds its previous version, whole. For a file
    rewritten often whose previous version is valid too (a run's metadata.json, which the
    row-group files complete), it saves a folder fsync per write."""
    tmp = temp_path_for(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = create_new(tmp)
        try:
            with os.fdopen(fd, "wb") as fh:
                half = len(data) // 2
                fh.write(data[:half])
                fh.flush()
                fault_point(f"{fault_prefix}_tmp_partial")
                fh.write(data[half:])
                fh.flush()
                os.fsync(fh.fileno())
            fault_point(f"{fault_prefix}_tmp_written")
            os.replace(tmp, path)
        except BaseException:
            discard(tmp)
            raise
        fault_point(f"{fault_prefix}_renamed")  # in place, the name not yet durable
        if sync_folder:
            fsync_dir(path.parent)
    except OSError as exc:
        raise storage_failure(path, exc) from exc


def remove_temp_files(folder: Path) -> list[str]:
    """Delete leftovers of interrupted writes (never a finished file)."""
    removed = []
    if folder.is_dir():
        for entry in os.scandir(folder):
            if is_temp_file(entry.name) and (entry.is_symlink() or entry.is_file(follow_symlinks=False)):
                try:
                    os.unlink(entry.path)
                except OSError as exc:
                    raise storage_failure(entry.path, exc, "remove the leftover") from exc
                removed.append(entry.name)
    return removed
