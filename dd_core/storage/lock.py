"""One writer per dataset folder (a killed holder releases it: see ``backend.FileSystem.lock``)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from dd_core.errors import DatasetLockedError
from dd_core.storage.backend import LockHeld
from dd_core.storage.layout import DatasetLayout


@contextmanager
def dataset_lock(layout: DatasetLayout) -> Iterator[None]:
    try:
        with layout.lock.lock(wait_s=0):
            yield
    except LockHeld as exc:
        raise DatasetLockedError(
            f"dataset folder {layout.root} is being written by another process ({exc.holder}). "
            "Wait for it to finish or stop it; a lock left by a killed process is released automatically"
        ) from exc
