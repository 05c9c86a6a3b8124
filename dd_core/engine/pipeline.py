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

``workers > 1`` produces the row groups in that many processes (``dd_core.engine.workers``).
"""

from __future__ import annotations

import asyncio
import gc
import queue
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pyarrow as pa

from dd_core.config import ConfigSource, DatasetConfig, load_config
from dd_core.engine.llm.runtime import LLMRuntime
from dd_core.engine.llm.usage import ModelUsage
from dd_core.engine.row_group import RowGroupResult, assemble, vector_stage
from dd_core.errors import GenerationError
from dd_core.fingerprinting import fingerprint
from dd_core.storage.filesystems import StoragePath
from dd_core.storage.row_group_files import RowGroupInfo, write_row_group_file

#: Rows in progress beyond the models' request slots (a share of them, at least ``MIN_SPARE_ROWS``):
#: a row holds at most one request at a time, so a few spare rows keep every slot busy while
#: rows finish and new ones start; more would only wait at the limiter.
SPARE_ROWS_PER_SLOT = 1 / 8
MIN_SPARE_ROWS = 4
#: Rows of admitted, unfinished row groups per request slot: room for the next row groups to
#: run while an older one waits for a straggler (~10 s at the tail of a lognormal latency).
LOOKAHEAD_ROWS_PER_SLOT = 16
MAX_ROW_GROUPS_IN_FLIGHT = 64


@dataclass(frozen=True)
class RowGroupJob:
    """One row group to produce."""

    index: int
    num_rows: int
    #: Write the finished row group here (crash-safely); None hands the table back instead.
    path: StoragePath | None = None


@dataclass
class ProducedRowGroup:
    """A finished row group: its self-description, LLM usage, and its table or written file."""

    info: RowGroupInfo
    usage: dict[str, ModelUsage]
    #: From the start of its row-wise stage (or its vectorised stage) to finished.
    seconds: float
    table: pa.Table | None = None
    path: StoragePath | None = None
    #: sha256 of the written file's bytes.
    sha256: str | None = None

    @property
    def index(self) -> int:
        return self.info.row_group

    @property
    def dropped_rows(self) -> int:
        return self.info.requested_rows - self.info.num_rows


@contextmanager
def produce_row_groups(
    config: ConfigSource,
    jobs: Iterable[RowGroupJob],
    *,
    buffer_size: int,
    llm: LLMRuntime | None = None,
    workers: int = 1,
    ordered: bool = False,
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
    sizes = _Sizes(config, buffer_size)
    if workers > 1:
        from dd_core.engine.workers import WorkerPool, worker_runtimes

        runtimes = worker_runtimes(config, runtime, workers)
        if len(runtimes) > 1:
            with WorkerPool(config, sizes, runtimes) as pool:
                yield _in_order(pool.results(jobs), ordered)
            return
    if not config.rowwise_names:
        yield _vectorised(config, sizes, jobs)
        return
    pipeline = _Pipeline(config, sizes, jobs, runtime)
    pipeline.start()
    try:
        yield _in_order(pipeline.results(), ordered)
    finally:
        pipeline.stop()


@dataclass(frozen=True)
class _Sizes:
    """What every row group's self-description shares."""

    config_hash: str
    config_hash_version: int
    buffer_size: int
    seed: int

    def __init__(self, config: DatasetConfig, buffer_size: int):
        fp = fingerprint(config)
        object.__setattr__(self, "config_hash", fp["config_hash"])
        object.__setattr__(self, "config_hash_version", fp["config_hash_version"])
        object.__setattr__(self, "buffer_size", buffer_size)
        object.__setattr__(self, "seed", config.seed)

    def info(self, job: RowGroupJob, num_rows: int) -> RowGroupInfo:
        return RowGroupInfo(job.index, job.num_rows, num_rows, self.config_hash, self.config_hash_version, self.buffer_size, self.seed)


def finish(job: RowGroupJob, result: RowGroupResult, sizes: _Sizes, started: float) -> ProducedRowGroup:
    """Describe a finished row group and, when the job says where, write it crash-safely."""
    info = sizes.info(job, result.table.num_rows)
    if job.path is None:
        return ProducedRowGroup(info, result.usage, time.perf_counter() - started, table=result.table)
    digest = write_row_group_file(job.path, result.table, info)
    return ProducedRowGroup(info, result.usage, time.perf_counter() - started, path=job.path, sha256=digest)


def _vectorised(config: DatasetConfig, sizes: _Sizes, jobs: Iterable[RowGroupJob]) -> Iterator[ProducedRowGroup]:
    """No LLM column: nothing to wait for, so each row group is made when asked for."""
    for job in jobs:
        started = time.perf_counter()
        yield finish(job, assemble(config, vector_stage(config, job.index, job.num_rows, sizes.buffer_size)), sizes, started)


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


class _Group:
    """A row group admitted to the row-wise stage."""

    def __init__(self, seq: int, job: RowGroupJob, cells, started: float):
        self.seq = seq
        self.job = job
        self.cells = cells
        self.started = started
        self.next_row = 0
        self.remaining = job.num_rows
        #: The row workers running one of its rows now (cancelled if it is discarded).
        self.workers: set[asyncio.Task] = set()


class _Pipeline:
    """The event loop's side: admission, row scheduling, completion and failure."""

    def __init__(self, config: DatasetConfig, sizes: _Sizes, jobs: Iterable[RowGroupJob], runtime: LLMRuntime):
        self.config = config
        self.sizes = sizes
        self.jobs = iter(jobs)
        self.runtime = runtime
        self._results: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._thread_main, name="dd-row-groups", daemon=True)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._main_task: asyncio.Task | None = None
        self._ready = threading.Event()
        self._stopping = False

    # --- the consumer's side (any thread) ---

    def start(self) -> None:
        self._thread.start()

    def results(self) -> Iterator[tuple[int, ProducedRowGroup]]:
        while True:
            kind, value = self._results.get()
            if kind == "part":
                yield value
            elif kind == "error":
                raise value
            else:
                return

    def stop(self) -> None:
        self._stopping = True
        self._ready.wait()
        loop, task = self._loop, self._main_task
        if loop is not None and task is not None:
            try:
                loop.call_soon_threadsafe(task.cancel)
            except RuntimeError:
                pass  # the loop has already closed
        self._thread.join()

    # --- the loop's side ---

    def _thread_main(self) -> None:
        # Objects alive now (configs, libraries) are not garbage: frozen, the collector's full
        # passes stay short, which keeps the event loop's response times flat.
        gc.freeze()
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # handed to the consumer, who raises it
            self._results.put(("error", exc))
        finally:
            self._ready.set()
            gc.unfreeze()
            self._results.put(("end", None))

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._main_task = asyncio.current_task()
        self._ready.set()
        if self._stopping:
            return
        from dd_core.engine.llm.session import ModelSessions  # aiohttp: only with LLM columns
        from dd_core.engine.rowwise import RowwiseStage

        async with ModelSessions(self.config, self.runtime) as sessions:
            self.stage = RowwiseStage(self.config, sessions.callers)
            slots = sessions.slots
            self.window = slots + max(MIN_SPARE_ROWS, int(slots * SPARE_ROWS_PER_SLOT))
            self.lookahead = LOOKAHEAD_ROWS_PER_SLOT * slots
            self.active: dict[int, _Group] = {}
            self.feeding: deque[_Group] = deque()
            self.rows_ready = asyncio.Event()
            self.row_workers: set[asyncio.Task] = set()
            self.admitted_rows = 0
            self.unstarted_rows = 0
            self.failure: tuple[int, BaseException] | None = None
            self.fatal: BaseException | None = None
            self.no_more_jobs = False
            self.room = asyncio.Event()  # the admission loop may look again
            self.done = asyncio.Event()
            self.cleanups: set[asyncio.Task] = set()
            admit = asyncio.create_task(self._admit_all())
            self._add_row_workers(self.window)
            try:
                await self.done.wait()
                if admit.done() and admit.exception() is not None:
                    raise admit.exception()
                if self.fatal is not None:
                    raise self.fatal
                if self.failure is not None:
                    raise self.failure[1]
            finally:
                admit.cancel()
                for group in list(self.active.values()):
                    self._discard(group)
                for worker in self.row_workers:
                    worker.cancel()
                await asyncio.gather(admit, *self.row_workers, *self.cleanups, return_exceptions=True)

    def _changed(self) -> None:
        """Something that admission or the end of the run waits for may have happened."""
        self.room.set()
        if self.fatal is not None or ((self.no_more_jobs or self.failure is not None) and not self.active):
            self.done.set()

    async def _admit_all(self) -> None:
        from dd_core.engine.llm.cache import RowGroupCache, cache_path

        seq = 0
        try:
            while self.failure is None:
                prepared = await asyncio.to_thread(self._prepare, RowGroupCache, cache_path)
                if prepared is None:
                    break
                job, cells = prepared
                while not self._room_for(job.num_rows):
                    self.room.clear()
                    await self.room.wait()
                if self.failure is not None:
                    await cells.cache.aclose()
                    break
                self._admit(seq, job, cells)
                seq += 1
        except BaseException as exc:
            if not isinstance(exc, asyncio.CancelledError):
                self.fatal = exc
            raise
        finally:
            self.no_more_jobs = True
            self.rows_ready.set()  # idle row workers see there is no more work
            self._changed()

    def _prepare(self, cache_type, cache_path):
        """In a worker thread: the next job, its vectorised stage and response cache."""
        job = next(self.jobs, None)
        if job is None:
            return None
        ctx = vector_stage(self.config, job.index, job.num_rows, self.sizes.buffer_size)
        return job, self.stage.cells_of(ctx, cache_type(cache_path(self.runtime.cache_dir, job.index)))

    def _room_for(self, num_rows: int) -> bool:
        if self.fatal is not None or self.failure is not None or not self.active:
            return True
        return (
            len(self.active) < MAX_ROW_GROUPS_IN_FLIGHT
            and self.admitted_rows + num_rows <= self.lookahead
            and self.unstarted_rows < self.window
        )

    def _admit(self, seq: int, job: RowGroupJob, cells) -> None:
        group = _Group(seq, job, cells, time.perf_counter())
        self.active[seq] = group
        self.admitted_rows += job.num_rows
        self.unstarted_rows += job.num_rows
        if job.num_rows == 0:
            self._complete_soon(group)
            return
        self.feeding.append(group)
        self.rows_ready.set()

    def _add_row_workers(self, count: int) -> None:
        for _ in range(count):
            task = self._loop.create_task(self._row_worker())
            self.row_workers.add(task)
            task.add_done_callback(self.row_workers.discard)

    async def _row_worker(self) -> None:
        """Run rows one after another, oldest row group first: ``window`` of these run at once
        (a task per worker, not per row)."""
        me = asyncio.current_task()
        feeding = self.feeding
        while True:
            if not feeding:
                if self.no_more_jobs or self.failure is not None or self.fatal is not None:
                    return
                self.rows_ready.clear()
                await self.rows_ready.wait()
                continue
            group = feeding[0]
            row = group.next_row
            group.next_row += 1
            if group.next_row == group.job.num_rows:
                feeding.popleft()
            self.unstarted_rows -= 1
            if self.unstarted_rows < self.window:
                self.room.set()
            group.workers.add(me)
            try:
                await self.stage.row(group.cells, row)
            except Exception as exc:  # a template error or a bug: nothing sensible continues
                self.fatal = exc
                self._changed()
                return
            finally:
                group.workers.discard(me)
            group.remaining -= 1
            if group.remaining == 0:
                self._complete_soon(group)

    def _complete_soon(self, group: _Group) -> None:
        task = self._loop.create_task(self._complete(group))
        self.cleanups.add(task)
        task.add_done_callback(self.cleanups.discard)

    async def _complete(self, group: _Group) -> None:
        try:
            await group.cells.cache.aclose()
            result = assemble(self.config, group.cells.ctx, self.stage.outcome(group.cells))
            part = await asyncio.to_thread(finish, group.job, result, self.sizes, group.started)
        except GenerationError as exc:
            self._failed(group, exc)
            return
        except Exception as exc:  # e.g. the disk is full: stop everything
            self.fatal = exc
            self._changed()
            return
        self._leave(group)
        self._results.put(("part", (group.seq, part)))
        self._changed()

    def _failed(self, group: _Group, exc: GenerationError) -> None:
        """No later row group continues; earlier ones finish; then the failure is raised."""
        self._leave(group)
        if self.failure is None or group.seq < self.failure[0]:
            self.failure = (group.seq, exc)
        for later in [g for g in self.active.values() if g.seq > group.seq]:
            self._discard(later)
        self._changed()

    def _leave(self, group: _Group) -> None:
        if self.active.pop(group.seq, None) is not None:
            self.admitted_rows -= group.job.num_rows
        if group in self.feeding:
            self.feeding.remove(group)
            self.unstarted_rows -= group.job.num_rows - group.next_row

    def _discard(self, group: _Group) -> None:
        """Cancel a row group's rows; its answered calls stay in its cache, which is closed."""
        self._leave(group)
        tasks = list(group.workers)
        for task in tasks:
            task.cancel()  # each is inside one of this row group's rows
        if self.fatal is None and not self.done.is_set():
            self._add_row_workers(len(tasks))

        async def close() -> None:
            await asyncio.gather(*tasks, return_exceptions=True)
            await group.cells.cache.aclose()

        task = self._loop.create_task(close())
        self.cleanups.add(task)
        task.add_done_callback(self.cleanups.discard)
