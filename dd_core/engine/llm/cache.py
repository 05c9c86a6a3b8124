"""Response cache: every successful call, stored before anything else happens.

One append-only log per row group (see ``filesystems``): on a local disk the entries of the
replies read in one turn of the event loop are appended with a single ``os.write`` at the end
of that turn, before the loop waits again, so a SIGKILL loses no call the process has acted on, and ``fsync`` runs (in a thread) every ``sync_interval_s`` and when the row
group ends. On object storage entries are flushed as one object every few seconds. A torn last
line is skipped on reading.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time

from dd_core.engine.llm.client import Completion
from dd_core.engine.llm.wire import cache_line
from dd_core.storage.faults import fault_point
from dd_core.storage.filesystems import LogAppender, StoragePath

log = logging.getLogger(__name__)


class RowGroupCache:
    def __init__(self, path: StoragePath | None):
        self._path = path
        self._entries: dict[str, Completion] = _read(path) if path else {}
        self._appender: LogAppender | None = None
        self._last_sync = time.monotonic()
        self._syncing: asyncio.Future | None = None
        self._pending: list[str] = []

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str) -> Completion | None:
        return self._entries.get(key)

    def put(self, key: str, completion: Completion) -> None:
        """Store a reply the moment it is read; the periodic sync runs off the event loop."""
        self._entries[key] = completion
        if self._path is None:
            return
        if self._appender is None:
            self._appender = self._path.log_appender()
        if not self._pending:
            # The replies read in this turn of the event loop go out in one write at its end,
            # before the loop waits for anything again.
            asyncio.get_running_loop().call_soon(self._flush)
        self._pending.append(cache_line(key, completion.content, completion.prompt_tokens, completion.completion_tokens))

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


def _read(path: StoragePath) -> dict[str, Completion]:
    entries: dict[str, Completion] = {}
    for number, line in enumerate(path.read_log(), start=1):
        try:
            entry = json.loads(line)
            entries[entry["key"]] = Completion(entry["content"], int(entry["prompt_tokens"]), int(entry["completion_tokens"]))
        except (ValueError, KeyError, TypeError):
            log.warning("skipping unreadable line %d of %s (a write cut short by a crash)", number, path)
    return entries


def cache_path(directory: StoragePath | None, row_group: int) -> StoragePath | None:
    return directory / f"rg_{row_group:05d}.jsonl" if directory else None
