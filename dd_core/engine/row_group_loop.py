"""The event loop that runs the row-wise stage of several row groups at once (see ``pipeline``).

Imported only for configs with LLM columns (see ``in_process``): it loads asyncio, aiohttp and
the LLM stack.

It lives in a thread of its own: admission (the next row group's claim and vectorised stage,
taken and computed in a worker thread, admitted while the look-ahead has room), row workers (``window`` coroutines
that each run rows one after another, oldest row group first), completion (assemble, write,
hand back through a queue) and failure (later row groups cancelled, earlier ones finished).

With an acceptance rule a row group's rows are its candidates, released a wave at a time: when
the last candidate of a wave finishes, the wave is judged in a worker thread (validators, then
the rule; see ``acceptance``) while the loop runs other row groups' rows, and the next wave, if
any, joins the feeding queue in its row group's place (oldest first).

With a batch-mode model, every row of an admitted row group starts at once (a task each): a
row group's batch goes out when all its live rows wait for it, so none may be held back by a
window of rows in progress. Look-ahead is then at least ``BATCH_LOOKAHEAD_ROWS`` rows, so the
batches of several row groups are with the provider at the same time.
"""

from __future__ import annotations

import asyncio
import gc
import json
import queue
import threading
import time
from collections import deque
from collections.abc import Coroutine, Iterable, Iterator

import numpy as np

from dd_core.config import DatasetConfig
from dd_core.engine.acceptance import CandidateSelection
from dd_core.engine.jobs import ProducedRowGroup, RowGroupIdentity, RowGroupJob, finish, finished_file
from dd_core.engine.llm.batch_journal import journal_path
from dd_core.engine.llm.cache import RowGroupCache, cache_path
from dd_core.engine.llm.cost import priced
from dd_core.engine.llm.runtime import LLMRuntime
from dd_core.engine.llm.session import ModelSessions
from dd_core.engine.lookahead import (
    BATCH_LOOKAHEAD_ROWS,
    LOOKAHEAD_ROWS_PER_SLOT,
    MAX_ROW_GROUPS_IN_FLIGHT,
    ROWS_PER_SLOT_SEVERAL_MODELS,
)
from dd_core.engine.row_group import assemble, vector_stage
from dd_core.engine.rowwise import RowGroupCells, RowwiseOutcome, RowwiseStage
from dd_core.errors import GenerationError
from dd_core.storage.claims import RowGroupClaim


class _Group:
    """A row group admitted to the row-wise stage."""

    def __init__(
        self,
        seq: int,
        job: RowGroupJob,
        claim: RowGroupClaim,
        cells: RowGroupCells,
        started: float,
        selection: CandidateSelection | None,
    ):
        self.seq = seq
        self.job = job
        #: Held until the row group is written or abandoned.
        self.claim = claim
        self.completing = False
        self.cells = cells
        self.started = started
        #: With an acceptance rule: the candidates judged so far (rows are then candidates).
        self.selection = selection
        #: Rows released to the row workers: all of them, or the candidates of the waves so far.
        self.released = job.num_rows if selection is None else selection.next_wave()
        self.wave_start = 0
        self.next_row = 0
        self.remaining = self.released
        #: The row workers running one of its rows now (cancelled if it is discarded).
        self.workers: set[asyncio.Task] = set()


class RowGroupLoop:
    """The event loop's side: admission, row scheduling, completion and failure."""

    def __init__(
        self, config: DatasetConfig, identity: RowGroupIdentity, jobs: Iterable[RowGroupJob], runtime: LLMRuntime
    ):
        self.config = config
        self.identity = identity
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
        async with ModelSessions(self.config, self.runtime) as sessions:
            self.stage = RowwiseStage(self.config, sessions.callers)
            slots = sessions.slots
            self.window = slots if len(sessions.callers) == 1 else slots * ROWS_PER_SLOT_SEVERAL_MODELS
            self.lookahead = LOOKAHEAD_ROWS_PER_SLOT * slots
            self.batched = sessions.batched
            if self.batched:
                self.lookahead = max(self.lookahead, BATCH_LOOKAHEAD_ROWS)
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
        seq = 0
        try:
            while self.failure is None:
                prepared = await asyncio.to_thread(self._prepare)
                if prepared is None:
                    break
                job, claim, cells, reused, selection = prepared
                if reused is not None:
                    self._results.put(("part", (seq, reused)))
                    seq += 1
                    continue
                try:
                    try:
                        await cells.start()
                    except BaseException:
                        await cells.aclose()
                        raise
                    while not self._room_for(job.num_rows):
                        self.room.clear()
                        await self.room.wait()
                except BaseException:
                    claim.release()
                    raise
                if self.failure is not None or self.fatal is not None:
                    await cells.aclose()
                    claim.release()
                    break
                self._admit(seq, job, claim, cells, selection)
                seq += 1
        except BaseException as exc:
            if not isinstance(exc, asyncio.CancelledError):
                self.fatal = exc
            raise
        finally:
            self.no_more_jobs = True
            self.rows_ready.set()  # idle row workers see there is no more work
            self._changed()

    def _prepare(self):
        """In a worker thread: the next job and its claim (waiting for another holder), then
        either the finished file it reuses or its vectorised stage and response cache."""
        job = next(self.jobs, None)
        if job is None:
            return None
        claim = RowGroupClaim(job.claim)
        if not claim.take(stopping=lambda: self._stopping or self.failure is not None or self.fatal is not None):
            return None
        try:
            reused = finished_file(job, self.identity)
            if reused is not None:
                claim.release()
                return job, claim, None, reused, None
            selection = None
            if self.config.accept is None:
                ctx = vector_stage(self.config, job.index, job.num_rows, self.identity.buffer_size)
            else:
                selection = CandidateSelection(self.config, job.index, job.num_rows, self.identity.buffer_size)
                ctx = selection.context(selection.next_wave())
            cache = RowGroupCache(cache_path(self.runtime.cache_dir, job.index), self.identity.config_hash)
            cells = self.stage.cells_of(ctx, cache, journal_path(self.runtime.cache_dir, job.index))
            return job, claim, cells, None, selection
        except BaseException:
            claim.release()
            raise

    def _room_for(self, num_rows: int) -> bool:
        if self.fatal is not None or self.failure is not None or not self.active:
            return True
        return (
            len(self.active) < MAX_ROW_GROUPS_IN_FLIGHT
            and self.admitted_rows + num_rows <= self.lookahead
            and self.unstarted_rows < self.window
        )

    def _admit(
        self,
        seq: int,
        job: RowGroupJob,
        claim: RowGroupClaim,
        cells: RowGroupCells,
        selection: CandidateSelection | None,
    ) -> None:
        group = _Group(seq, job, claim, cells, time.perf_counter(), selection)
        self.active[seq] = group
        self.admitted_rows += job.num_rows
        self.unstarted_rows += group.released
        if group.released == 0:
            if selection is not None:
                self._wave_done_soon(group)  # judges the empty wave: a row group of 0 rows
            else:
                self._complete_soon(group)
            return
        if self.batched:
            self.unstarted_rows -= group.released
            for row in range(group.released):
                group.workers.add(self._loop.create_task(self._run_row(group, row)))
            return
        self.feeding.append(group)
        self.rows_ready.set()

    def _rows_may_come(self) -> bool:
        """More jobs, or a row group whose next wave of candidates is still to be decided."""
        return not self.no_more_jobs or any(g.selection is not None and not g.completing for g in self.active.values())

    def _add_row_workers(self, count: int) -> None:
        for _ in range(count):
            task = self._loop.create_task(self._row_worker())
            self.row_workers.add(task)
            task.add_done_callback(self.row_workers.discard)

    async def _row_worker(self) -> None:
        """Run rows one after another, oldest row group first: ``window`` of these run at once
        (a task per worker, not per row)."""
        feeding = self.feeding
        me = asyncio.current_task()
        while True:
            if not feeding:
                if self.failure is not None or self.fatal is not None or not self._rows_may_come():
                    return
                self.rows_ready.clear()
                await self.rows_ready.wait()
                continue
            group = feeding[0]
            row = group.next_row
            group.next_row += 1
            if group.next_row == group.released:
                feeding.popleft()
            self.unstarted_rows -= 1
            if self.unstarted_rows < self.window:
                self.room.set()
            if not await self._run_row(group, row, me):
                return

    async def _run_row(self, group: _Group, row: int, me: asyncio.Task | None = None) -> bool:
        """One row of ``group``, in the calling task (``me``, when the caller knows it); False
        when the run must stop."""
        me = me or asyncio.current_task()
        group.workers.add(me)
        try:
            await self.stage.row(group.cells, row)
        except Exception as exc:  # a template error or a bug: nothing sensible continues
            self.fatal = exc
            self._changed()
            return False
        finally:
            group.workers.discard(me)
        group.remaining -= 1
        if group.remaining == 0:
            if group.selection is not None:
                self._wave_done_soon(group)
            else:
                self._complete_soon(group)
        return True

    def _complete_soon(self, group: _Group) -> None:
        self._soon(self._complete(group))

    def _wave_done_soon(self, group: _Group) -> None:
        self._soon(self._wave_done(group))

    def _soon(self, coroutine: Coroutine) -> None:
        task = self._loop.create_task(coroutine)
        self.cleanups.add(task)
        task.add_done_callback(self.cleanups.discard)

    async def _wave_done(self, group: _Group) -> None:
        """Judge the wave just finished (off the loop), then release the next one or complete."""
        selection, cells = group.selection, group.cells
        start, end = group.wave_start, group.released
        live = [i for i in range(start, end) if cells.rows[i] is not None]

        def judge() -> int:
            selection.judge(start, end, live, self.stage.arrays([cells.rows[i] for i in live]))
            more = selection.next_wave()
            if more:
                self.stage.extend(cells, selection.context(end + more))
            return more

        try:
            more = await asyncio.to_thread(judge)
        except Exception as exc:  # the rule or a validator on this wave: a config error, or a bug
            self.fatal = exc
            self._changed()
            return
        if group.seq not in self.active:
            return  # discarded meanwhile (a failure elsewhere)
        if more == 0:
            self._complete_soon(group)
            return
        group.wave_start, group.released, group.remaining = end, end + more, more
        self.unstarted_rows += more
        later = next((i for i, g in enumerate(self.feeding) if g.seq > group.seq), len(self.feeding))
        self.feeding.insert(later, group)  # oldest row group first
        self.rows_ready.set()

    async def _complete(self, group: _Group) -> None:
        group.completing = True
        try:
            await group.cells.aclose()
            cells = group.cells
            if group.selection is None:
                result = assemble(self.config, cells.ctx, self.stage.outcome(cells))
            else:
                failures = RowwiseOutcome({}, np.zeros(0, dtype=bool), cells.usage, cells.failures)
                result = await asyncio.to_thread(group.selection.result, cells.usage, failures)
            result.llm_spend = self._spend(group.cells.cache.spend())
            part = await asyncio.to_thread(finish, group.job, result, self.identity, group.started)
        except GenerationError as exc:
            self._failed(group, exc)
            return
        except Exception as exc:  # e.g. the disk is full: stop everything
            self.fatal = exc
            self._changed()
            return
        finally:
            group.claim.release()
        self._leave(group)
        self._results.put(("part", (group.seq, part)))
        self._changed()

    def _spend(self, spends: dict[str, dict]) -> str:
        """The row group's record of what it was paid for (with costs where models have prices)."""
        if not spends:
            return ""
        prices = {m.alias: m.price for m in self.config.models}
        return json.dumps(priced(spends, prices), sort_keys=True, separators=(",", ":"))

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
            self.unstarted_rows -= group.released - group.next_row

    def _discard(self, group: _Group) -> None:
        """Cancel a row group's rows; its answered calls stay in its cache, which is closed."""
        self._leave(group)
        tasks = list(group.workers)
        for task in tasks:
            task.cancel()  # each is inside one of this row group's rows
        if self.fatal is None and not self.done.is_set() and not self.batched:
            self._add_row_workers(len(tasks))

        async def close() -> None:
            await asyncio.gather(*tasks, return_exceptions=True)
            await group.cells.aclose()
            if not group.completing:  # else the completion releases it once written
                group.claim.release()

        task = self._loop.create_task(close())
        self.cleanups.add(task)
        task.add_done_callback(self.cleanups.discard)
