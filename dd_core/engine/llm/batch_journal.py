"""The batch journal: which provider batches a row group has submitted, recorded durably.

One append-only log per row group beside its response cache (``llm-cache/rg_00007.batches.jsonl``).
Each record is written and synced (fsync, or an upload on object storage) before the step it
announces goes on:

1. ``submit``: the uploaded input file (for providers that take one) and the cache keys it asks
   for, BEFORE the batch is created. A crash after this line and before the next one is resolved
   by looking the batch up (see ``BatchAPI.lookup``): created or not, it is never created twice.
2. ``created``: the provider's batch id, BEFORE waiting for it. A resumed run polls this batch
   for these keys instead of submitting them again.
3. ``collected``: AFTER the batch's results are in the response cache (and the cache is synced).
   Losing this line costs one more download of a finished batch, never a second payment.

Custom ids are the requests' cache keys, so a result goes to the cache under the key an online
call of the same request would use. A torn last line (a crash mid-write) is skipped.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field

from dd_core.log import get_logger
from dd_core.storage.backend import LogAppender
from dd_core.storage.filesystems import StoragePath

log = get_logger(__name__)


@dataclass
class Submission:
    """One batch of one model for one LLM column of the row group (one attempt)."""

    nonce: str
    alias: str
    column: str
    attempt: int
    input_file_id: str
    keys: tuple[str, ...]
    submitted_at: float
    batch_id: str | None = None
    collected: bool = False

    @property
    def label(self) -> str:
        ident = self.batch_id or f"({f'file {self.input_file_id}, ' if self.input_file_id else ''}not yet created)"
        return f"batch {ident} of model '{self.alias}', column '{self.column}', attempt {self.attempt + 1}"


@dataclass
class BatchJournal:
    path: StoragePath | None
    submissions: dict[str, Submission] = field(default_factory=dict)
    _appender: LogAppender | None = field(default=None, repr=False)

    @classmethod
    def open(cls, path: StoragePath | None) -> BatchJournal:
        journal = cls(path)
        if path is not None:
            for number, line in enumerate(path.read_log(), start=1):
                try:
                    journal._apply(json.loads(line))
                except (ValueError, KeyError, TypeError) as exc:
                    log.warning(
                        "skipping unreadable line %d of %s (%s: a write cut short by a crash)", number, path, exc
                    )
        return journal

    def pending(self) -> list[Submission]:
        """Submitted batches whose results are not yet in the response cache, oldest first."""
        return [s for s in self.submissions.values() if not s.collected]

    def awaiting(self) -> dict[str, Submission]:
        """Cache key -> the uncollected submission that asked for it."""
        return {key: s for s in self.pending() for key in s.keys}

    def submit(self, *, alias: str, column: str, attempt: int, input_file_id: str, keys: list[str]) -> Submission:
        """Record a batch about to be created (synced before this returns)."""
        submission = Submission(uuid.uuid4().hex, alias, column, attempt, input_file_id, tuple(keys), time.time())
        self._write(
            {
                "op": "submit", "nonce": submission.nonce, "alias": alias, "column": column, "attempt": attempt,
                "input_file_id": input_file_id, "keys": list(keys), "t": submission.submitted_at,
            }
        )  # fmt: skip
        self.submissions[submission.nonce] = submission
        return submission

    def created(self, submission: Submission, batch_id: str) -> None:
        """Record the provider's id of a submitted batch (synced before this returns)."""
        self._write({"op": "created", "nonce": submission.nonce, "batch_id": batch_id})
        submission.batch_id = batch_id

    def collected(self, submission: Submission) -> None:
        """Record that the batch's results are in the response cache (synced before this returns)."""
        self._write({"op": "collected", "nonce": submission.nonce})
        submission.collected = True

    def close(self) -> None:
        if self._appender is not None:
            self._appender.close()
            self._appender = None

    def _write(self, record: dict) -> None:
        if self.path is None:
            return
        if self._appender is None:
            self._appender = self.path.log_appender()
        self._appender.append((json.dumps(record, separators=(",", ":")) + "\n").encode())
        self._appender.sync()

    def _apply(self, record: dict) -> None:
        op = record["op"]
        if op == "submit":
            self.submissions[record["nonce"]] = Submission(
                nonce=record["nonce"],
                alias=str(record["alias"]),
                column=str(record["column"]),
                attempt=int(record["attempt"]),
                input_file_id=str(record["input_file_id"]),
                keys=tuple(str(k) for k in record["keys"]),
                submitted_at=float(record["t"]),
            )
        elif op == "created":
            self.submissions[record["nonce"]].batch_id = str(record["batch_id"])
        elif op == "collected":
            self.submissions[record["nonce"]].collected = True
        else:
            raise ValueError(f"unknown op {op!r}")


def journal_path(directory: StoragePath | None, row_group: int) -> StoragePath | None:
    return directory / f"rg_{row_group:05d}.batches.jsonl" if directory else None
