"""Per-row-group claims: one producer of a row group at a time, across processes and machines.

Used where several runs write one dataset at once (parallel Dagster runs): a producer takes a
row group's claim before the row group starts (``RowGroupJob.claim``) and releases it once the
file is written, so a second producer waits, then finds the file and reuses it. A killed
holder's claim is released by the OS (local disk) or expires (object storage lease).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from dd_core.storage.backend import LockHeld
from dd_core.storage.filesystems import StoragePath, storage_path

#: How often a waiting producer looks whether it was asked to stop.
POLL_S = 0.25


class RowGroupClaim:
    """One row group's claim, taken in one thread and released in another (a pipeline
    prepares row groups in one thread and writes them in others). ``None``: no claim needed."""

    def __init__(self, path: StoragePath | None):
        self.path = None if path is None else storage_path(path)
        self._held = contextlib.ExitStack()

    def take(self, stopping: Callable[[], bool] = lambda: False) -> bool:
        """Wait for the claim (as long as another producer holds it); False if ``stopping()``
        turned true meanwhile."""
        if self.path is None:
            return True
        while True:
            try:
                self._held.enter_context(self.path.lock(wait_s=POLL_S))
                return True
            except LockHeld:
                if stopping():
                    return False

    def release(self) -> None:
        """Idempotent."""
        self._held.close()
