"""Running a command on a real pseudo-terminal and reading what its user sees.

The command gets a pty as stdin, stdout and stderr, sized ``columns`` x ``rows``, so it takes the
terminal path (rich, colour, the live progress bar). Its output goes through pyte, a VT100
emulator, whose screen is the text a person would read: colour codes applied, a transient
progress bar erased, carriage returns honoured. The emulated screen is much wider than the
terminal the command is told about, so a long message its terminal would soft-wrap stays one
line here (what the command drew is unchanged: it lays out for ``columns``).
"""

from __future__ import annotations

import fcntl
import os
import pty
import select
import struct
import subprocess
import termios
import time
from collections.abc import Sequence
from dataclasses import dataclass

import pyte

#: Columns of the emulated screen: wider than any line a command prints for a 100-column terminal.
SCREEN_COLUMNS = 2000


@dataclass
class TerminalRun:
    returncode: int
    #: The screen's lines from the first one written (scrollback included), trailing blanks removed.
    lines: list[str]
    #: Everything the command wrote, escape codes and all.
    raw: bytes

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    @property
    def last_line(self) -> str:
        return next((line for line in reversed(self.lines) if line.strip()), "")


def run_in_terminal(
    argv: Sequence[str],
    *,
    columns: int = 100,
    rows: int = 40,
    env: dict[str, str] | None = None,
    cwd: str | os.PathLike | None = None,
    timeout: float = 120,
) -> TerminalRun:
    """Run ``argv`` on a new pty and return its exit code and screen; kill it after ``timeout`` s."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
    child_env = {k: v for k, v in (env if env is not None else os.environ).items()}
    for name in ("COLUMNS", "LINES", "NO_COLOR", "FORCE_COLOR", "TERM"):
        child_env.pop(name, None)
    child_env["TERM"] = "xterm-256color"
    try:
        proc = subprocess.Popen(
            [str(a) for a in argv],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=child_env,
            cwd=cwd,
            start_new_session=True,
            close_fds=True,
        )
    finally:
        os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                proc.kill()
                raise TimeoutError(f"{' '.join(map(str, argv))} did not finish within {timeout:g} s")
            ready, _, _ = select.select([master], [], [], left)
            if not ready:
                continue
            try:
                data = os.read(master, 1 << 16)
            except OSError:  # EIO: every holder of the pty's other end has closed it
                break
            if not data:
                break
            chunks.append(data)
        returncode = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    raw = b"".join(chunks)
    return TerminalRun(returncode, screen_lines(raw, rows), raw)


def screen_lines(raw: bytes, rows: int) -> list[str]:
    """The lines ``raw`` leaves on a terminal (scrollback first), as a person reads them."""
    screen = pyte.HistoryScreen(SCREEN_COLUMNS, rows, history=100_000)
    stream = pyte.ByteStream(screen)
    stream.feed(raw)
    history = ["".join(line[x].data for x in range(max(line, default=-1) + 1)) for line in screen.history.top]
    lines = [line.rstrip() for line in [*history, *screen.display]]
    while lines and not lines[-1]:
        lines.pop()
    return lines
