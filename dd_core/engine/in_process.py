"""Row groups produced in this process: the producer that ``pipeline`` runs itself and that
each worker process runs (see ``workers``), and one row group asked for alone.

Without LLM columns there is nothing to wait for: each row group is computed while the one
before it is written by a writer thread. With LLM columns an event loop runs the row-wise stage
of several row groups at once (``row_group_loop``); that module, and with it asyncio, aiohttp
and the LLM stack, is imported only for such configs (a sampler-only run starts without them).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager

import pyarrow as pa

from dd_core.config import ConfigSource, DatasetConfig, load_config
from dd_core.engine.acceptance import vectorised_row_group
from dd_core.engine.jobs import ProducedRowGroup, RowGroupJob, finish, finished_file, identity_of
from dd_core.engine.llm.runtime import LLMRuntime
from dd_core.engine.row_group import AcceptanceCounts, RowGroupResult
from dd_core.storage.claims import RowGroupClaim
from dd_core.storage.row_group_files import RowGroupIdentity


@contextmanager
def produce_in_process(
    config: DatasetConfig, identity: RowGroupIdentity, jobs: Iterable[RowGroupJob], runtime: LLMRuntime
) -> Iterator[Iterator[tuple[int, ProducedRowGroup]]]:
    """(position in ``jobs``, finished row group) as each finishes. Leaving the block stops what
    is still running (a row group being written is finished first)."""
    if not config.rowwise_names:
        parts = _vectorised(config, identity, jobs)
        try:
            yield enumerate(parts)
        finally:
            parts.close()  # waits for the row group being written
        return
    from dd_core.engine.row_group_loop import RowGroupLoop  # asyncio, aiohttp, the LLM stack: only with LLM columns

    loop = RowGroupLoop(config, identity, jobs, runtime)
    loop.start()
    try:
        yield loop.results()
    finally:
        loop.stop()


def _vectorised(
    config: DatasetConfig, identity: RowGroupIdentity, jobs: Iterable[RowGroupJob]
) -> Iterator[ProducedRowGroup]:
    """Each row group is computed while the one before it is written by a writer thread (parquet
    encoding and fsyncs release the GIL) and handed back once written, so at most two are in
    memory. A caller that stops at a row group handed back leaves the next one unwritten;
    stopped otherwise (an error, Ctrl-C), the row group being written is finished first (the
    executor's exit): no write is cut short."""
    with ThreadPoolExecutor(1, thread_name_prefix="dd-writer") as writer:
        pending: Future | None = None
        for job in jobs:
            claim = RowGroupClaim(job.claim)
            claim.take()
            try:
                started = time.perf_counter()
                reused = finished_file(job, identity)
                result = None if reused else vectorised_row_group(config, job.index, job.num_rows, identity.buffer_size)
                if pending is not None:
                    yield pending.result()  # the one before, written meanwhile
            except BaseException:
                claim.release()  # a caller stopping here leaves this one unwritten
                raise
            pending = writer.submit(_written, job, reused, result, identity, started, claim)
        if pending is not None:
            yield pending.result()


def _written(
    job: RowGroupJob,
    reused: ProducedRowGroup | None,
    result: RowGroupResult | None,
    identity: RowGroupIdentity,
    started: float,
    claim: RowGroupClaim,
) -> ProducedRowGroup:
    try:
        return reused or finish(job, result, identity, started)
    finally:
        claim.release()


def run_row_group(
    config: ConfigSource, index: int, num_rows: int, *, buffer_size: int | None = None, llm: LLMRuntime | None = None
) -> RowGroupResult:
    """Generate row group ``index`` (before processors), with LLM usage and dropped rows.

    Raises ``GenerationError`` when more than the config's ``max_failed_row_share`` of rows
    lost an LLM cell; the calls that did succeed stay in the response cache. (Several row
    groups at once, pipelined or in worker processes: ``dd_core.orchestration.produce_row_groups``.)
    """
    config = load_config(config)
    if index < 0 or num_rows < 0:
        raise ValueError(f"index and num_rows must not be negative (got {index}, {num_rows})")
    buffer_size = buffer_size or num_rows
    if not config.rowwise_names:
        return vectorised_row_group(config, index, num_rows, buffer_size)
    with produce_in_process(
        config, identity_of(config, buffer_size), [RowGroupJob(index, num_rows)], llm or LLMRuntime()
    ) as produced:
        _, part = next(iter(produced))
    acceptance = AcceptanceCounts.parse(part.info.acceptance)
    return RowGroupResult(
        part.table, num_rows, part.usage, part.info.llm_spend, acceptance, part.rejected, part.kept_candidates
    )


def generate_row_group(
    config: ConfigSource, index: int, num_rows: int, *, buffer_size: int | None = None, llm: LLMRuntime | None = None
) -> pa.Table:
    """Generate row group ``index`` with ``num_rows`` rows, before processors.

    The result depends only on the config, the index and ``buffer_size`` (the dataset's
    row-group size, which fixes where an ordered seed file is read from; default
    ``num_rows``). Fewer rows give a prefix of the same row group.
    """
    return run_row_group(config, index, num_rows, buffer_size=buffer_size, llm=llm).table
