"""A server child process: own session, killed with its parent, stopped by process group."""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Self

HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def _die_with_parent() -> None:
    """In the child before exec: the kernel sends SIGTERM when the test process dies (Linux), so
    a killed pytest leaves no server behind."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG


class ServerProcess:
    """Base of the servers: ``start`` launches ``command()`` and waits for ``ready()``;
    ``stop`` ends the process group (SIGTERM, then SIGKILL)."""

    name = "server"
    #: Seconds a server may take to answer (Azurite: ~5 s on a quiet machine, 10 s on a busy one).
    start_timeout_s = 120.0

    def __init__(self, workdir: str | os.PathLike | None = None):
        self._own_dir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix=f"dd-{self.name}-"))
        self._process: subprocess.Popen | None = None
        self.log_path = self.workdir / f"{self.name}.log"

    def command(self) -> Sequence[str]:
        raise NotImplementedError

    def child_env(self) -> Mapping[str, str]:
        return os.environ

    def ready(self) -> bool:
        raise NotImplementedError

    @property
    def env(self) -> dict[str, str]:
        """Variables a client needs to reach the server."""
        raise NotImplementedError

    def create_bucket(self, name: str) -> None:
        raise NotImplementedError

    def url(self, bucket: str, prefix: str = "") -> str:
        raise NotImplementedError

    def start(self) -> Self:
        self.workdir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self._process = subprocess.Popen(
                list(self.command()),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=dict(self.child_env()),
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        self._wait(self.ready)
        return self

    def _wait(self, condition: Callable[[], bool]) -> None:
        deadline = time.monotonic() + self.start_timeout_s
        while not condition():
            if self._process is not None and self._process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self._process.returncode}: {self.log_tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"{self.name} did not answer within {self.start_timeout_s:.0f} s: {self.log_tail()}")
            time.sleep(0.05)

    def pids(self) -> list[int]:
        """The processes serving (their children included)."""
        return [self._process.pid] if self._process is not None else []

    def log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-2000:]
        return ""

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        for sig, wait_s in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, sig)
            try:
                process.wait(wait_s)
                break
            except subprocess.TimeoutExpired:
                continue
        if self._own_dir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
