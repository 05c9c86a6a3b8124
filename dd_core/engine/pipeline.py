"""Pipelined production of row groups: the public way to make many of them.

Row groups run one after another leave the model server idle while each one's slowest replies
finish. Here one event loop (in a thread of its own) runs the row-wise stage of several row
groups at once, sharing each model's caller and limiter: rows of the next row groups start
while the current one's stragglers finish, and the limiter serves the oldest row group first
(priority ``(row_group, -column_depth, row)``), so checkpoints keep flowing. Look-ahead is
bounded by rows per request slot (not by the number of records), so memory stays flat. The
vectorised stage of the next row group is computed ahead in a worker thread.

Each row group is still a pure function of (config, index): pipelining changes when cells are
sent, never what they send, so the data is byte-identical to one row group at a time. Finished
row groups are handed back as they complete (or in job order with ``ordered=True``); a row
group written to ``job.path`` is written crash-safely before it is handed back. When a row
group fails (``GenerationError``), no later one is started, those already started after it are
cancelled (their finished calls stay in the response cache), the earlier ones are finished and
handed back, and then the failure is raised.

``workers > 1`` produces the row groups in that many processes (``workers``), each running the
in-process producer (``in_process``);
``out_of_process`` does so even with one, leaving the caller's process free for its own work
(an orchestrator recording each row group runs beside generation, on another core).

A job with a ``claim`` is produced only while its producer holds the claim, and with
``reuse_finished`` a file found finished at its path (after waiting for the claim) is handed
back as ``reused`` instead of being produced again: parallel producers of one dataset (Dagster
runs) never make the same row group twice.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from dd_core.config import ConfigSource, load_config
from dd_core.engine.in_process import produce_in_process
from dd_core.engine.jobs import ProducedRowGroup, RowGroupJob, identity_of
from dd_core.engine.llm.runtime import LLMRuntime
from dd_core.engine.workers import WorkerPool, worker_runtimes

__all__ = ["ProducedRowGroup", "RowGroupJob", "produce_row_groups"]


@contextmanager
def produce_row_groups(
    config: ConfigSource,
    jobs: Iterable[RowGroupJob],
    *,
    buffer_size: int,
    llm: LLMRuntime | None = None,
    workers: int = 1,
    ordered: bool = False,
    out_of_process: bool = False,
) -> Iterator[Iterator[ProducedRowGroup]]:
    """Produce ``jobs`` pipelined (and in ``workers`` processes); iterate what it yields.

        with produce_row_groups(config, jobs, buffer_size=1000, llm=runtime) as produced:
            for part in produced:
                record(part)

    ``jobs`` is read lazily. Leaving the block (finished, on an exception or on Ctrl-C)
    stops everything still running: calls in flight are abandoned (those answered are in the
    response cache), worker processes are stopped. ``buffer_size`` is the dataset's row-group
    size (it fixes where an ordered seed file is read from). Per model, requests in flight
    never exceed its ``max_parallel_requests``, across all workers together.
    """
    config = load_config(config)
    runtime = llm or LLMRuntime()
    identity = identity_of(config, buffer_size)
    runtimes = worker_runtimes(config, runtime, workers) if workers > 1 or out_of_process else [runtime]
    if len(runtimes) > 1 or out_of_process:
        with WorkerPool(config, identity, runtimes) as pool:
            yield _in_order(pool.results(jobs), ordered)
        return
    with produce_in_process(config, identity, jobs, runtime) as produced:
        yield _in_order(produced, ordered)


def _in_order(parts: Iterator[tuple[int, ProducedRowGroup]], ordered: bool) -> Iterator[ProducedRowGroup]:
    """Parts arrive tagged with their job's position; ``ordered`` holds each until the ones
    before it have been handed back."""
    held: dict[int, ProducedRowGroup] = {}
    following = 0
    for seq, part in parts:
        if not ordered:
            yield part
            continue
        held[seq] = part
        while following in held:
            yield held.pop(following)
            following += 1
