"""Per-row-group claims: one generator of a row group at a time, across processes and machines.

Used where several runs write one dataset at once (Dagster backfills). A killed holder's claim
is released by the OS (local disk) or expires (object storage lease).
"""

from __future__ import annotations

from dd_core.storage.filesystems import StoragePath, storage_path


def row_group_claim(lock_path: StoragePath | str, wait_s: float = -1):
    """Hold the claim on one row group; waits for another holder (forever by default)."""
    return storage_path(lock_path).lock(wait_s=wait_s)
