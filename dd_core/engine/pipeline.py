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

``workers > 1`` produces the row groups in that many processes (``dd_core.engine.workers``);
``out_of_process`` does so even with one, leaving the caller's process free for its own work
(an orchestrator recording each row group runs beside generation, on another core).

A job with a ``claim`` is produced only while its producer holds the claim, and with
``reuse_finished`` a file found finished at its path (after waiting for the claim) is handed
back as ``reused`` instead of being produced again: parallel producers of one dataset (Dagster
runs) never make the same row group twice.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager

from dd_core.config import ConfigSource, DatasetConfig, load_config
from dd_core.engine.jobs import ProducedRowGroup, RowGroupJob, RowGroupSizes, finish, finished_file
from dd_core.engine.llm.runtime import LLMRuntime
from dd_core.engine.row_group import assemble, vector_stage
from dd_core.storage.claims import RowGroupClaim

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
    sizes = RowGroupSizes(config, buffer_size)
    if workers > 1 or out_of_process:
        from dd_core.engine.workers import WorkerPool, worker_runtimes

        runtimes = worker_runtimes(config, runtime, workers)
        if len(runtimes) > 1 or out_of_process:
            with WorkerPool(config, sizes, runtimes) as pool:
                yield _in_order(pool.results(jobs), ordered)
            return
    if not config.rowwise_names:
        parts = _vectorised(config, sizes, jobs)
        try:
            yield parts
        finally:
            parts.close()  # waits for the row group being written
        return
    from dd_core.engine.row_group_loop import RowGroupLoop  # aiohttp: only with LLM columns

    pipeline = RowGroupLoop(config, sizes, jobs, runtime)
    pipeline.start()
    try:
        yield _in_order(pipeline.results(), ordered)
    finally:
        pipeline.stop()


def _vectorised(config: DatasetConfig, sizes: RowGroupSizes, jobs: Iterable[RowGroupJob]) -> Iterator[ProducedRowGroup]:
    """No LLM column: nothing to wait for. Each row group is computed while the one before it is
    written by a writer thread (parquet encoding and fsyncs release the GIL) and handed back
    once written, so at most two are in memory. A caller that stops at a row group handed back
    leaves the next one unwritten; stopped otherwise (an error, Ctrl-C), the row group being
    written is finished first (the executor's exit): no write is cut short."""
    with ThreadPoolExecutor(1, thread_name_prefix="dd-writer") as writer:
        pending: Future | None = None
        for job in jobs:
            claim = RowGroupClaim(job.claim)
            claim.take()
            try:
                started = time.perf_counter()
                reused = finished_file(job, sizes)
                result = None if reused else assemble(config, vector_stage(config, job.index, job.num_rows, sizes.buffer_size))
                if pending is not None:
                    yield pending.result()  # the one before, written meanwhile
            except BaseException:
                claim.release()  # a caller stopping here leaves this one unwritten
                raise
            pending = writer.submit(_written, job, reused, result, sizes, started, claim)
        if pending is not None:
            yield pending.result()


def _written(job: RowGroupJob, reused: ProducedRowGroup | None, result, sizes: RowGroupSizes, started: float, claim: RowGroupClaim) -> ProducedRowGroup:
    try:
        return reused or finish(job, result, sizes, started)
    finally:
        claim.release()


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
