"""Response cache: every successful call, stored before anything else happens.

One append-only log per row group (see ``filesystems``): on a local disk each entry is
appended with a single ``os.write`` as soon as its reply is parsed, so a SIGKILL loses no call
the process has read, and ``fsync`` runs at most every ``sync_interval_s`` and when the row
group ends. On object storage entries are flushed as one object every few seconds. A torn last
line is skipped on reading.
"""

from __future__ import annotations

import asyncio
import json
import time

from dd_core.engine.llm.replies import Completion
from dd_core.redaction import logger
from dd_core.storage.faults import fault_point
from dd_core.storage.filesystems import LogAppender, StoragePath

log = logger(__name__)


class RowGroupCache:
    def __init__(self, path: StoragePath | None, sync_interval_s: float = 0.5):
        self._path = path
        self._entries: dict[str, Completion] = _read(path) if path else {}
        self._appender: LogAppender | None = None
        self._sync_interval_s = sync_interval_s
        self._last_sync = time.monotonic()
        self._dirty = False

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str) -> Completion | None:
        return self._entries.get(key)

    async def put(self, key: str, completion: Completion) -> None:
        self._entries[key] = completion
        if self._path is None:
            return
        if self._appender is None:
            self._appender = self._path.log_appender()
        entry = {"key": key, "content": completion.content, "prompt_tokens": completion.prompt_tokens, "completion_tokens": completion.completion_tokens}
        self._appender.append((json.dumps(entry, ensure_ascii=False) + "\n").encode())
        self._dirty = True
        fault_point("llm_cache_written")
        if time.monotonic() - self._last_sync >= self._sync_interval_s:
            self._last_sync = time.monotonic()
            self._dirty = False
            await asyncio.to_thread(self._appender.sync)  # off the event loop: fsync or upload takes ms

    def close(self) -> None:
        if self._appender is not None:
            self._appender.close()
            self._appender = None


def _read(path: StoragePath) -> dict[str, Completion]:
    entries: dict[str, Completion] = {}
    for number, line in enumerate(path.read_log(), start=1):
        try:
            entry = json.loads(line)
            if not isinstance(entry["content"], str):
                raise TypeError("content is not text")
            entries[entry["key"]] = Completion(entry["content"], int(entry["prompt_tokens"]), int(entry["completion_tokens"]))
        except (ValueError, KeyError, TypeError, OverflowError, RecursionError):
            log.warning("skipping unreadable line %d of %s (a write cut short by a crash)", number, path)
    return entries


def cache_path(directory: StoragePath | None, row_group: int) -> StoragePath | None:
    return directory / f"rg_{row_group:05d}.jsonl" if directory else None
