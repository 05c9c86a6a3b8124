"""One model's batches for one row group: submit through the journal, wait, collect into the cache.

``submit`` uploads the requests, journals the submission, creates the batch, journals its id,
then waits for it; ``collect`` waits for a batch an earlier run journaled (``resolve`` first finds
one whose creation was not journaled). Either way the results go to ``store`` (which
makes them durable in the response cache) before the journal marks the batch collected.
Every request's outcome is a ``Completion`` or a ``CallFailed`` (``retryable`` says whether a
later batch may succeed).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from dd_core.engine.llm.batch_api import BatchAPI, BatchStatus
from dd_core.engine.llm.batch_journal import BatchJournal, Submission
from dd_core.engine.llm.client import CallFailed, Completion
from dd_core.log import get_logger

log = get_logger("dd.batch")

Outcome = Completion | CallFailed
#: Makes completions durable in the response cache (under their keys) before returning.
Store = Callable[[Mapping[str, Completion]], Awaitable[None]]
#: Called with each new state of a batch while it is waited for.
Progress = Callable[[Submission, BatchStatus], None]


@dataclass
class BatchSettings:
    alias: str
    row_group: int
    poll_interval_s: float


class BatchRunner:
    def __init__(
        self,
        client: BatchAPI,
        journal: BatchJournal,
        settings: BatchSettings,
        store: Store,
        on_progress: Progress | None = None,
    ):
        self.client = client
        self.journal = journal
        self.settings = settings
        self._store = store
        self._on_progress = on_progress or (
            lambda submission, status: log.info("%s: %s", self._label(submission), status.describe())
        )
        self._collecting: dict[str, asyncio.Task[dict[str, Outcome]]] = {}
        #: Requests that went into batches, and the batches created (for usage reports).
        self.submitted_requests = 0
        self.created_batches = 0

    def _label(self, submission: Submission) -> str:
        return f"row group {self.settings.row_group}: {submission.label}"

    async def submit(self, column: str, attempt: int, requests: Mapping[str, bytes]) -> dict[str, Outcome]:
        """Send ``requests`` (cache key -> serialised body) as batches; every key's outcome."""
        outcomes: dict[str, Outcome] = {}
        for chunk in _chunks(requests, self.client.max_requests, self.client.max_bytes):
            submission = await self._create(column, attempt, chunk)
            outcomes.update(await self.collect(submission))
        return outcomes

    def collect(self, submission: Submission) -> asyncio.Task[dict[str, Outcome]]:
        """Wait for a journaled batch and collect it (one task per batch, shared by its waiters)."""
        task = self._collecting.get(submission.nonce)
        if task is None:
            task = self._collecting[submission.nonce] = asyncio.ensure_future(self._collect(submission))
        return task

    async def resolve(self, submission: Submission) -> bool:
        """For a submission an earlier run journaled without a batch id: find its batch and
        journal it (True), or close it when it was never created (False: its requests were not
        sent, so they go into a new batch)."""
        taken = frozenset(s.batch_id for s in self.journal.submissions.values() if s.batch_id)
        found = await self.client.lookup(submission, taken)
        if found is None:
            log.info("%s: journaled but never created; its requests go into a new batch", self._label(submission))
            self.journal.collected(submission)  # nothing to collect: nothing was paid for
            return False
        self.journal.created(submission, found.id)
        log.info("%s: found, created by an earlier run that stopped before journaling it", self._label(submission))
        return True

    async def _create(self, column: str, attempt: int, requests: Mapping[str, bytes]) -> Submission:
        s = self.settings
        prepared = await self.client.prepare(requests, f"dd-rg{s.row_group:05d}-{column}-{attempt}")
        submission = self.journal.submit(
            alias=s.alias, column=column, attempt=attempt, input_file_id=prepared, keys=list(requests)
        )
        metadata = {
            "dd_row_group": str(s.row_group),
            "dd_column": column[:500],
            "dd_attempt": str(attempt),
            "dd_submission": submission.nonce,
        }
        status = await self.client.submit(prepared, requests, metadata=metadata, submission=submission)
        self.journal.created(submission, status.id)
        self.submitted_requests += len(requests)
        self.created_batches += 1
        log.info("%s: submitted, %d requests", self._label(submission), len(requests))
        return submission

    async def _collect(self, submission: Submission) -> dict[str, Outcome]:
        status = await self.client.wait(
            submission.batch_id, self.settings.poll_interval_s, lambda st: self._on_progress(submission, st)
        )
        outcomes: dict[str, Outcome] = {}
        if status.status == "failed":
            reason = "; ".join(status.errors) or "no reason given"
            failure = CallFailed(
                f"the provider refused {self._label(submission)}: {reason}", code="batch_failed", retryable=False
            )
            outcomes = dict.fromkeys(submission.keys, failure)
        else:
            wanted = set(submission.keys)
            async for line in self.client.results(status):
                if line.custom_id in wanted:
                    outcomes[line.custom_id] = line.completion if line.completion is not None else line.failure
            missing = CallFailed(
                f"{self._label(submission)} ended {status.status} without a result for this request",
                code=f"batch_{status.status}",
                retryable=status.status != "cancelled",
            )
            for key in wanted - outcomes.keys():
                outcomes[key] = missing
        completions = {k: v for k, v in outcomes.items() if isinstance(v, Completion)}
        if completions:
            await self._store(completions)
        self.journal.collected(submission)
        return outcomes


def _chunks(requests: Mapping[str, bytes], max_requests: int, max_bytes: int) -> list[dict[str, bytes]]:
    """``requests`` split into groups within a batch's limits (100 bytes per line for its framing)."""
    chunks: list[dict[str, bytes]] = [{}]
    size = 0
    for key, payload in requests.items():
        if chunks[-1] and (len(chunks[-1]) >= max_requests or size + len(payload) > max_bytes):
            chunks.append({})
            size = 0
        chunks[-1][key] = payload
        size += len(payload) + 100
    return [c for c in chunks if c]
