"""Response cache: every successful call, stored before anything else happens.

One append-only log per row group (see ``filesystems``): on a local disk the entries of the
replies read in one turn of the event loop are appended with a single ``os.write`` at the end
of that turn, before the loop waits again, so a SIGKILL loses no call the process has acted on, and ``fsync`` runs (in a thread) every ``sync_interval_s`` and when the row
group ends. On object storage entries are flushed as one object every few seconds. A torn last
line is skipped on reading.

Each entry also says who paid for it: the model alias, whether it came from a batch, and the
config hash of the row-group version it was made for. A request abandoned after it reached the
server (possibly billed, with no reply to keep) is an entry too (``"abandoned": true``, its
possibly billed tokens, no key), written the moment it is given up on. A row group's cost is what its log holds
for its own version, so it is counted once, whichever run paid (a run killed inside a row group
could not record its calls; the run that finishes the row group counts them), and entries reused
by another version cost that version nothing.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass

from dd_core.engine.llm.cost import Spend
from dd_core.engine.llm.replies import Completion
from dd_core.engine.llm.wire import abandoned_line, cache_line, encode_string
from dd_core.log import get_logger
from dd_core.storage.backend import LogAppender
from dd_core.storage.faults import fault_point
from dd_core.storage.filesystems import StoragePath

log = get_logger(__name__)


@dataclass(frozen=True)
class Paid:
    """Who paid for a cached call."""

    alias: str
    batch: bool
    config_hash: str


def paid_fields(paid: Paid) -> str:
    """The entry's JSON fields after the token counts (see ``wire.cache_line``)."""
    return f', "alias": {encode_string(paid.alias)}, "batch": {"true" if paid.batch else "false"}, "paid_for": {encode_string(paid.config_hash)}'


class RowGroupCache:
    def __init__(self, path: StoragePath | None, config_hash: str = ""):
        self._path = path
        #: The row-group version that calls made now are paid for.
        self.config_hash = config_hash
        self._paid: dict[str, Paid] = {}
        #: Requests abandoned after they reached the server: who pays, prompt and completion tokens.
        self._abandoned: list[tuple[Paid, int, int]] = []
        self._entries: dict[str, Completion] = _read(path, self._paid, self._abandoned) if path else {}
        self._appender: LogAppender | None = None
        self._last_sync = time.monotonic()
        self._syncing: asyncio.Future | None = None
        self._pending: list[str] = []
        #: (alias, batch) -> who pays for calls made now, and its entry fields (made once).
        self._payers: dict[tuple[str, bool], tuple[Paid, str]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str) -> Completion | None:
        return self._entries.get(key)

    def put(self, key: str, completion: Completion, alias: str, *, batch: bool = False) -> None:
        """Store a reply the moment it is read; the periodic sync runs off the event loop."""
        self._entries[key] = completion
        payer = self._payer(alias, batch)
        self._paid[key] = payer[0]
        self._append(
            cache_line(
                key,
                completion.content,
                completion.prompt_tokens,
                completion.completion_tokens,
                payer[1],
                completion.cut,
            )
        )

    def put_abandoned(self, alias: str, prompt_tokens: int, completion_tokens: int) -> None:
        """Record a request given up on after it reached the server (possibly billed)."""
        payer = self._payer(alias, False)
        self._abandoned.append((payer[0], prompt_tokens, completion_tokens))
        self._append(abandoned_line(prompt_tokens, completion_tokens, payer[1]))

    def _payer(self, alias: str, batch: bool) -> tuple[Paid, str]:
        payer = self._payers.get((alias, batch))
        if payer is None or payer[0].config_hash != self.config_hash:
            paid = Paid(alias, batch, self.config_hash)
            payer = self._payers[alias, batch] = (paid, paid_fields(paid))
        return payer

    def _append(self, line: str) -> None:
        if self._path is None:
            return
        if self._appender is None:
            self._appender = self._path.log_appender()
        if not self._pending:
            # The replies read in this turn of the event loop go out in one write at its end,
            # before the loop waits for anything again.
            asyncio.get_running_loop().call_soon(self._flush)
        self._pending.append(line)

    def spend(self) -> dict[str, Spend]:
        """Per model alias, the calls in this log paid for this row-group version."""
        spent: dict[str, Spend] = {}
        for key, paid in self._paid.items():
            if paid.config_hash == self.config_hash:
                completion = self._entries[key]
                spent.setdefault(paid.alias, Spend()).add_call(
                    completion.prompt_tokens, completion.completion_tokens, batch=paid.batch
                )
        for paid, prompt_tokens, completion_tokens in self._abandoned:
            if paid.config_hash == self.config_hash:
                spent.setdefault(paid.alias, Spend()).add_abandoned(prompt_tokens, completion_tokens)
        return spent

    async def persist(self) -> None:
        """Write and sync everything put so far (before a batch is marked collected)."""
        self._flush()
        if self._appender is not None:
            await asyncio.to_thread(self._appender.sync)

    def _flush(self) -> None:
        if not self._pending or self._appender is None:
            return
        lines, self._pending = self._pending, []
        self._appender.append("".join(lines).encode())
        fault_point("llm_cache_written")
        now = time.monotonic()
        if now - self._last_sync >= self._appender.sync_interval_s and (self._syncing is None or self._syncing.done()):
            self._last_sync = now
            self._syncing = asyncio.get_running_loop().run_in_executor(None, self._appender.sync)  # fsync or upload: ms

    async def aclose(self) -> None:
        """Wait for a sync in progress, then sync and close (off the event loop)."""
        self._flush()
        if self._syncing is not None:
            await asyncio.gather(self._syncing, return_exceptions=True)
            self._syncing = None
        if self._appender is not None:
            appender, self._appender = self._appender, None
            await asyncio.to_thread(appender.close)


def _read(path: StoragePath, paid: dict[str, Paid], abandoned: list[tuple[Paid, int, int]]) -> dict[str, Completion]:
    """The log's entries (the first of a key wins), who paid for them into ``paid`` (entries
    written before dd recorded it have no payer and are not counted), and the abandoned requests
    into ``abandoned``."""
    entries: dict[str, Completion] = {}
    for number, line in enumerate(path.read_log(), start=1):
        try:
            entry = json.loads(line)
            payer = (
                Paid(entry["alias"], entry.get("batch") is True, entry["paid_for"])
                if isinstance(entry.get("alias"), str) and isinstance(entry.get("paid_for"), str)
                else None
            )
            if entry.get("abandoned") is True:
                if payer is not None:
                    abandoned.append((payer, int(entry["prompt_tokens"]), int(entry["completion_tokens"])))
                continue
            key = entry["key"]
            if key in entries:
                continue
            if not isinstance(entry["content"], str):
                raise TypeError("content is not text")
            tokens = int(entry["prompt_tokens"]), int(entry["completion_tokens"])
            entries[key] = Completion(entry["content"], *tokens, entry.get("cut") is True)
            if payer is not None:
                paid[key] = payer
        except (ValueError, KeyError, TypeError, OverflowError, RecursionError):
            log.warning("skipping unreadable line %d of %s (a write cut short by a crash)", number, path)
    return entries


def cache_path(directory: StoragePath | None, row_group: int) -> StoragePath | None:
    return directory / f"rg_{row_group:05d}.jsonl" if directory else None
