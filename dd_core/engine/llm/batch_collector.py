"""Gathers a row group's batch-mode cells and sends them as batches at the right moment.

A row asks for one cell at a time. The collector holds each batch-mode request until every live
row of the row group (not finished, not dropped) is waiting on it, then flushes the requests of
the shallowest column depth as one batch per (model, column): chained columns become successive
batches, and rows that got ahead (a cache hit) wait for the others instead of making a batch of
their own. Requests whose keys an earlier run already submitted (journaled, uncollected) wait for
that batch instead of joining a new one.

The engine must let every row of the row group reach its batch-mode cell (no window of rows in
progress may hold the rest back), and call ``row_finished`` once per row, whether it finished or
was dropped.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field

from dd_core.engine.llm.batch_journal import Submission
from dd_core.engine.llm.batch_runner import BatchRunner, Outcome
from dd_core.engine.llm.client import CallFailed


@dataclass
class _Group:
    """Unsent requests of one (model, column): key -> (row, payload, future)."""

    depth: int
    requests: dict[str, tuple[int, bytes, asyncio.Future[Outcome]]] = field(default_factory=dict)


class BatchCollector:
    def __init__(self, runners: Mapping[str, BatchRunner], rows: int):
        self.runners = dict(runners)
        self.live_rows = rows
        self._waiting: dict[int, int] = {}  # row -> depth of the cell it waits for
        self._groups: dict[tuple[str, str], _Group] = {}
        self._inflight_depths: dict[int, int] = {}  # depth -> batches in flight at that depth
        self._batches: dict[tuple[str, str], int] = {}  # batches made per (model, column), for attempt numbers
        self._awaiting: dict[str, tuple[str, Submission]] = {}  # key -> (alias, journaled submission)
        self._tasks: set[asyncio.Task] = set()

    async def start(self) -> None:
        """Take up what earlier runs journaled: collect finished or running batches, re-submit
        none of them, and forget submissions that were never created."""
        for alias, runner in self.runners.items():
            for submission in runner.journal.pending():
                if submission.alias != alias:
                    continue
                if submission.batch_id is None and not await runner.resolve(submission):
                    continue  # never created: its keys are free to go into a new batch
                self._track(runner.collect(submission))
                for key in submission.keys:
                    self._awaiting[key] = (alias, submission)
                column = (alias, submission.column)
                self._batches[column] = max(self._batches.get(column, 0), submission.attempt + 1)

    async def request(self, alias: str, column: str, depth: int, row: int, key: str, payload: bytes) -> Outcome:
        """The outcome of one cell's request (a ``Completion`` or a ``CallFailed``)."""
        self._waiting[row] = depth
        try:
            journaled = self._awaiting.get(key)
            if journaled is not None and journaled[0] == alias:
                return await self._journaled(journaled[1], alias, depth, row, key)
            future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
            group = self._groups.setdefault((alias, column), _Group(depth))
            group.depth = min(group.depth, depth)
            group.requests[key] = (row, payload, future)
            self._maybe_flush()
            return await future
        finally:
            self._waiting.pop(row, None)
            self._maybe_flush()

    def row_finished(self) -> None:
        self.live_rows -= 1
        self._maybe_flush()

    async def close(self) -> None:
        """Stop batches still being waited for (they stay journaled for the next run)."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _journaled(self, submission: Submission, alias: str, depth: int, row: int, key: str) -> Outcome:
        self._inflight_depths[depth] = self._inflight_depths.get(depth, 0) + 1
        try:
            outcomes = await self.runners[alias].collect(submission)
        finally:
            self._inflight_depths[depth] -= 1
            self._waiting.pop(row, None)  # not waiting from the moment the batch is in, so peers do not flush early
        self._awaiting.pop(key, None)
        return outcomes[key]

    def _maybe_flush(self) -> None:
        if not self._groups or len(self._waiting) < self.live_rows:
            return
        depth = min(group.depth for group in self._groups.values())
        if any(d < depth and n for d, n in self._inflight_depths.items()):
            return  # rows still waiting on a shallower batch will join this depth's batch
        for column, group in list(self._groups.items()):
            if group.depth == depth:
                del self._groups[column]
                self._track(asyncio.ensure_future(self._send(column, group)))

    async def _send(self, column: tuple[str, str], group: _Group) -> None:
        alias, name = column
        attempt = self._batches.get(column, 0)
        self._batches[column] = attempt + 1
        self._inflight_depths[group.depth] = self._inflight_depths.get(group.depth, 0) + 1
        requests = {key: payload for key, (_, payload, _) in group.requests.items()}
        try:
            outcomes: Mapping[str, Outcome | BaseException] = await self.runners[alias].submit(name, attempt, requests)
        except asyncio.CancelledError:
            for _, _, future in group.requests.values():
                future.cancel()
            raise
        except Exception as exc:  # e.g. the upload was refused, or the journal could not be written
            outcomes = dict.fromkeys(requests, exc)
        finally:
            self._inflight_depths[group.depth] -= 1
        for row, _, _ in group.requests.values():
            self._waiting.pop(row, None)  # all at once: no peer sees a half-answered batch as "everyone waits"
        for key, (_, _, future) in group.requests.items():
            outcome = outcomes[key]
            if future.done():
                continue
            if isinstance(outcome, BaseException) and not isinstance(outcome, CallFailed):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)

    def _track(self, task: asyncio.Future) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
