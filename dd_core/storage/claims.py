"""Per-row-group claims: one generator of a row group at a time, across processes.

Used where several runs write one dataset at once (Dagster backfills). An OS file lock, so a
killed holder releases its claim immediately.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock


@contextmanager
def row_group_claim(lock_path: Path, timeout_s: float = -1) -> Iterator[None]:
    """Hold the claim on one row group; waits for another holder (forever by default)."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(lock_path), timeout=timeout_s):
        yield
