"""One writer per dataset folder (an OS file lock: a killed holder releases it at once)."""

from __future__ import annotations

import json
import os
import socket
import sys
from contextlib import contextmanager
from collections.abc import Iterator

from filelock import FileLock, Timeout

from dd_core.errors import DatasetLockedError
from dd_core.storage.layout import DatasetLayout
from dd_core.storage.metadata import now_iso


@contextmanager
def dataset_lock(layout: DatasetLayout) -> Iterator[None]:
    layout.root.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(layout.lock), timeout=0)
    try:
        lock.acquire()
    except Timeout as exc:
        raise DatasetLockedError(
            f"dataset folder {layout.root} is being written by another process ({_holder(layout)}). "
            "Wait for it to finish or stop it; a lock left by a killed process is released automatically"
        ) from exc
    try:
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "since": now_iso(), "command": " ".join(sys.argv)}
        layout.lock_holder.write_text(json.dumps(holder))
        yield
    finally:
        layout.lock_holder.unlink(missing_ok=True)
        lock.release()


def _holder(layout: DatasetLayout) -> str:
    try:
        info = json.loads(layout.lock_holder.read_text())
        return f"pid {info['pid']} on {info['host']} since {info['since']}: {info['command']}"
    except (OSError, ValueError, KeyError):
        return "holder unknown"
