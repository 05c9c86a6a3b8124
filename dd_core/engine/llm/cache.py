"""Response cache: every successful call, on disk before anything else happens.

One append-only JSON-lines log per row group. Each entry is appended with a single
``os.write`` as soon as its reply is parsed, so a SIGKILL loses no call the process has read;
``fsync`` runs at most every ``sync_interval_s`` and when the row group ends (power loss may
lose the last fraction of a second). A torn last line is skipped on reading.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from pathlib import Path

from dd_core.engine.llm.client import Completion
from dd_core.storage.faults import fault_point

log = logging.getLogger(__name__)


class RowGroupCache:
    def __init__(self, path: Path | None, sync_interval_s: float = 0.5):
        self._path = path
        self._entries: dict[str, Completion] = _read(path) if path else {}
        self._fd: int | None = None
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
        if self._fd is None:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self._path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        entry = {"key": key, "content": completion.content, "prompt_tokens": completion.prompt_tokens, "completion_tokens": completion.completion_tokens}
        os.write(self._fd, (json.dumps(entry, ensure_ascii=False) + "\n").encode())
        self._dirty = True
        fault_point("llm_cache_written")
        if time.monotonic() - self._last_sync >= self._sync_interval_s:
            self._last_sync = time.monotonic()
            self._dirty = False
            await asyncio.to_thread(os.fsync, self._fd)  # off the event loop: fsync can take ms

    def sync(self) -> None:
        if self._fd is not None and self._dirty:
            os.fsync(self._fd)
            self._dirty = False
        self._last_sync = time.monotonic()

    def close(self) -> None:
        self.sync()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _read(path: Path) -> dict[str, Completion]:
    entries: dict[str, Completion] = {}
    if not path.exists():
        return entries
    with path.open("rb") as fh:
        for number, line in enumerate(fh, start=1):
            try:
                entry = json.loads(line)
                entries[entry["key"]] = Completion(entry["content"], int(entry["prompt_tokens"]), int(entry["completion_tokens"]))
            except (ValueError, KeyError, TypeError):
                log.warning("skipping unreadable line %d of %s (a write cut short by a crash)", number, path)
    return entries


def cache_path(directory: Path | None, row_group: int) -> Path | None:
    return directory / f"rg_{row_group:05d}.jsonl" if directory else None
