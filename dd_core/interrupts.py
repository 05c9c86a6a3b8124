"""Ctrl-C and SIGTERM as exceptions that unwind dd cleanly (lock released, LLM cache closed,
finished row groups recorded).

SIGINT arrives as ``KeyboardInterrupt`` already; inside ``sigterm_raises()`` SIGTERM arrives
the same way, as ``Terminated`` (a ``KeyboardInterrupt``) raised in the main thread, so it
propagates through whatever loop produces row groups. ``deferred()`` marks a section that
must not be cut in half (a row group's file and its record in metadata.json): a signal that
arrives inside it is delivered when the section ends.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Terminated(KeyboardInterrupt):
    """SIGTERM, delivered like Ctrl-C."""

    signum = signal.SIGTERM


class Interrupted(KeyboardInterrupt):
    """A run stopped by Ctrl-C or SIGTERM after unwinding: what is kept, and how to continue.

    ``folder`` is the dataset folder (None when the run stopped before it had one).
    """

    def __init__(self, signum: int, folder: object | None, finished: int, total: int):
        self.signum = signum
        self.folder = folder
        self.finished = finished
        self.total = total
        super().__init__(self.message)

    @property
    def exit_code(self) -> int:
        return 128 + self.signum

    @property
    def message(self) -> str:
        name = "SIGTERM" if self.signum == signal.SIGTERM else "Ctrl-C"
        if self.folder is None:
            return f"Stopped by {name} before anything was written."
        return (
            f"Stopped by {name}: {self.finished} of {self.total} row group(s) are finished and kept in "
            f"{self.folder}. Continue with: ddsynth resume {self.folder}"
        )


#: Set once SIGTERM arrived: a KeyboardInterrupt raised by asyncio after it is this SIGTERM.
_terminating = False


def signal_number(exc: KeyboardInterrupt) -> int:
    return getattr(exc, "signum", signal.SIGTERM if _terminating else signal.SIGINT)


def _on_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    global _terminating
    # Once: a second SIGTERM while the first unwinds must not cut the clean-up short
    # (SIGKILL still ends the process at once).
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _terminating = True
    if _event_loop_running():
        # Inside asyncio.run (the LLM stage) Ctrl-C cancels the running tasks at their next
        # await, so no reply already read is lost, then raises KeyboardInterrupt: SIGTERM
        # takes the same road.
        signal.raise_signal(signal.SIGINT)
        return
    raise Terminated()


def _event_loop_running() -> bool:
    asyncio = sys.modules.get("asyncio")
    if asyncio is None:
        return False
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


@contextmanager
def sigterm_raises() -> Iterator[None]:
    """While inside, SIGTERM raises ``Terminated`` in the main thread (no-op off the main thread)."""
    if not _on_main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def deferred() -> Iterator[None]:
    """Hold SIGINT/SIGTERM until the section ends, then deliver the first one to its handler."""
    if not _on_main_thread():
        yield
        return
    pending: list[int] = []
    saved = {signum: signal.getsignal(signum) for signum in _SIGNALS}

    def hold(signum: int, frame: FrameType | None) -> None:
        pending.append(signum)

    for signum in _SIGNALS:
        signal.signal(signum, hold)
    try:
        yield
    finally:
        for signum, handler in saved.items():
            signal.signal(signum, handler)
        if pending:
            _deliver(pending[0], saved[pending[0]])


def _deliver(signum: int, handler: object) -> None:
    if callable(handler):
        handler(signum, None)  # raises KeyboardInterrupt / Terminated for dd's own handlers
    elif handler == signal.SIG_DFL:
        signal.raise_signal(signum)  # what would have happened, now at a safe point
