"""How many worker processes a run uses when the caller leaves it to dd (``workers=None``).

The cores available, except for a small job with no LLM column: a second process costs about
as much as ten 1,000-row sampler row groups (fork, its own first-row-group warm-up, the
hand-offs: whole-process CPU of customers' 20,000 rows 0.60 s with one worker, 0.72 s with
two, and slower in wall time too on 2 cores), so one worker is used per ``ROWS_PER_WORKER``
rows still to make. LLM jobs wait on the network, not the CPU: they get every core.
"""

from __future__ import annotations

import os

from dd_core.config import DatasetConfig

#: Sampler-only rows one worker makes before another process pays for itself (measured on
#: customers.yaml, 2 cores: 2 workers lose at 20,000 rows, win from ~60,000).
ROWS_PER_WORKER = 50_000


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def worker_count(config: DatasetConfig, rows: int, row_groups: int, requested: int | None) -> int:
    """``requested`` when given (capped at one per row group), else the automatic choice."""
    if requested is None:
        requested = available_cores() if config.rowwise_names else min(available_cores(), 1 + rows // ROWS_PER_WORKER)
    return max(1, min(requested, row_groups))
