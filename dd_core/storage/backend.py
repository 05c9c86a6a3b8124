"""What every storage backend offers dd (``FileSystem``), and who holds a lock.

Each backend keeps the same promises:
- ``write_atomic``: readers see the old content or the new, never a mix;
- ``lock``: one holder at a time, and a killed holder does not block forever;
- append-only logs (the LLM response cache): at most ``LogAppender.sync_interval_s`` of
  appended lines can be lost to a crash.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import IO


class LockHeld(Exception):
    """The lock is held by someone else; ``holder`` says who, as far as known."""

    def __init__(self, holder: str):
        super().__init__(holder)
        self.holder = holder


def holder_info() -> dict:
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "since": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": " ".join(sys.argv)[:300],
    }


def describe_holder(info: dict | None) -> str:
    if not info:
        return "holder unknown"
    return f"pid {info.get('pid')} on {info.get('host')} since {info.get('since')}: {info.get('command')}"


class FileSystem(ABC):
    """One backend. Paths are strings in the backend's own form (a local path, an object key)."""

    is_local = False

    @abstractmethod
    def uri(self, path: str) -> str: ...

    @abstractmethod
    def read_bytes(self, path: str) -> bytes:
        """Raises FileNotFoundError when there is nothing at ``path``."""

    @abstractmethod
    def open_for_arrow(self, path: str) -> str | IO[bytes]:
        """Something pyarrow's readers accept, reading only the ranges they ask for."""

    @abstractmethod
    def content_version(self, path: str) -> str:
        """What identifies the content at ``path`` (a hash, an ETag, a generation)."""

    @abstractmethod
    def write_atomic(self, path: str, data: bytes, fault_prefix: str, sync_folder: bool = True) -> None:
        """Replace ``path`` with ``data``, whole or not at all (``sync_folder``: local folders only)."""

    @abstractmethod
    def exists(self, path: str) -> bool: ...

    @abstractmethod
    def list_names(self, folder: str) -> list[str]:
        """Names directly inside ``folder`` (files and sub-folders); empty when it is absent."""

    @abstractmethod
    def unlink(self, path: str) -> None: ...

    @abstractmethod
    def publish(self, local_file: Path, path: str) -> None:
        """Move a finished local file to ``path`` atomically (it disappears locally)."""

    @abstractmethod
    def lock(self, path: str, *, wait_s: float) -> AbstractContextManager[None]:
        """Hold the lock at ``path``; wait up to ``wait_s`` (-1: forever, 0: fail at once)."""

    @abstractmethod
    def read_log(self, path: str) -> Iterator[bytes]: ...

    @abstractmethod
    def log_appender(self, path: str) -> LogAppender: ...

    def remove_temp_files(self, folder: str) -> list[str]:
        return []

    @abstractmethod
    def sync_folder(self, folder: str) -> None:
        """Make the names written into ``folder`` so far (with ``sync_folder=False``) durable."""


class LogAppender(ABC):
    #: How often its owner should call ``sync`` (the most a crash can lose on object storage).
    sync_interval_s = 0.5

    @abstractmethod
    def append(self, line: bytes) -> None: ...

    @abstractmethod
    def sync(self) -> None: ...

    @abstractmethod
    def close(self) -> None: ...
