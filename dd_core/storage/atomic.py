"""Crash-safe file replacement: temp file in the same folder, fsync, atomic rename, fsync folder."""

from __future__ import annotations

import os
from pathlib import Path

from dd_core.storage.faults import fault_point

TMP_MARK = ".tmp-"


def temp_path_for(path: Path) -> Path:
    return path.with_name(f".{path.name}{TMP_MARK}{os.getpid()}")


def is_temp_file(name: str) -> bool:
    return name.startswith(".") and TMP_MARK in name


def fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes, *, fault_prefix: str = "file") -> None:
    """Replace ``path`` with ``data``: readers see the old file or the new one, never a mix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path_for(path)
    half = len(data) // 2
    with open(tmp, "wb") as fh:
        fh.write(data[:half])
        fh.flush()
        fault_point(f"{fault_prefix}_tmp_partial")
        fh.write(data[half:])
        fh.flush()
        os.fsync(fh.fileno())
    fault_point(f"{fault_prefix}_tmp_written")
    os.replace(tmp, path)
    fsync_dir(path.parent)
    fault_point(f"{fault_prefix}_renamed")


def remove_temp_files(folder: Path) -> list[str]:
    """Delete leftovers of interrupted writes (never a finished file)."""
    removed = []
    if folder.is_dir():
        for entry in os.scandir(folder):
            if entry.is_file() and is_temp_file(entry.name):
                os.unlink(entry.path)
                removed.append(entry.name)
    return removed
