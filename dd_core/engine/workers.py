"""Row groups produced in several worker processes, each running its own pipeline.

One process runs one event loop on one core: past a few thousand calls/s, or for sampler-only
configs, more cores need more processes. The parent hands out row groups (oldest first, a few
ahead per worker), and each worker produces them pipelined, writes their files crash-safely
and sends back what it made; the parent stays the only writer of the dataset's metadata.

Per model, ``max_parallel_requests`` is split across the workers (9 over 2 workers: 5 and 4),
so the total in flight never exceeds it; a model allowing fewer requests than there are
workers limits the number of workers. Workers die with the parent (SIGKILL included: Linux's
parent-death signal, else a watchdog thread) and ignore Ctrl-C (the parent stops them). They
are forked when the parent has no other thread (fast, and warm: modules already loaded);
beside other threads (a notebook, a test server, an object-store lease, or the native threads
of obstore's runtime, which Python's ``threading`` does not count and which do not survive a
fork) forking could inherit a held lock or a dead runtime, so each is then a fresh
``python -m dd_core.engine.workers`` on a socket pair, which, unlike multiprocessing's spawn
and fork server, does not re-run the caller's main module.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import gc
import multiprocessing
import multiprocessing.connection
import os
import pickle
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from dd_core.config import DatasetConfig
from dd_core.config.llm_columns import LLMColumn
from dd_core.engine.in_process import produce_in_process
from dd_core.engine.jobs import ProducedRowGroup, RowGroupJob
from dd_core.engine.llm.runtime import LLMRuntime, ModelOverride
from dd_core.engine.lookahead import LOOKAHEAD_ROWS_PER_SLOT, MAX_ROW_GROUPS_IN_FLIGHT
from dd_core.errors import GenerationError
from dd_core.storage.row_group_files import RowGroupIdentity
from dd_core.without_pandas import refuse_pandas

STOP_GRACE_S = 5.0


def split(total: int, parts: int) -> list[int]:
    """``total`` as ``parts`` near-equal shares, larger first (9, 2 -> [5, 4])."""
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def worker_runtimes(config: DatasetConfig, runtime: LLMRuntime, workers: int) -> list[LLMRuntime]:
    """One runtime per worker, each with its share of every model's request limit and of its
    per-minute limits (so the workers together stay within them)."""
    aliases = sorted({c.model for c in config.columns if isinstance(c, LLMColumn)})
    endpoints = {alias: runtime.endpoint(config.model(alias)) for alias in aliases}
    caps = {alias: e.max_parallel_requests for alias, e in endpoints.items()}
    per_minute = [int(e.max_requests_per_minute) for e in endpoints.values() if e.max_requests_per_minute]
    workers = max(1, min([workers, *caps.values(), *per_minute]))  # every share at least one request
    shares = {alias: split(cap, workers) for alias, cap in caps.items()}
    runtimes = []
    for i in range(workers):
        overrides = dict(runtime.overrides)
        for alias in aliases:
            rpm, tpm = endpoints[alias].max_requests_per_minute, endpoints[alias].max_tokens_per_minute
            overrides[alias] = dataclasses.replace(
                overrides.get(alias, ModelOverride()),
                max_parallel_requests=shares[alias][i],
                max_requests_per_minute=rpm / workers if rpm else None,
                max_tokens_per_minute=tpm / workers if tpm else None,
            )
        limits = {alias: min(limit, shares[alias][i]) for alias, limit in runtime.limits.items() if alias in shares}
        runtimes.append(LLMRuntime(cache_dir=runtime.cache_dir, overrides=overrides, limits=limits))
    return runtimes


def _single_threaded() -> bool:
    """No other Python thread, and no thread of a Tokio runtime (obstore's, once any object
    store was used): Linux names each thread in /proc. Other native threads (jemalloc's,
    OpenBLAS's) are fork-safe and always there."""
    if threading.active_count() != 1:
        return False
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return True
    for task in tasks:
        try:
            with open(f"/proc/self/task/{task}/comm") as fh:
                if fh.read().startswith("tokio"):
                    return False
        except OSError:
            continue  # the thread ended meanwhile
    return True


class WorkerPool:
    """Worker processes producing row groups; the parent hands them out and collects them."""

    def __init__(self, config: DatasetConfig, identity: RowGroupIdentity, runtimes: list[LLMRuntime]):
        self.config = config
        self.identity = identity
        self.runtimes = runtimes
        slots = (
            max(1, sum(o.max_parallel_requests or 0 for o in runtimes[0].overrides.values()))
            if config.rowwise_names
            else 0
        )
        # Row groups handed to a worker ahead of its progress: what its own look-ahead admits, plus one.
        ahead = LOOKAHEAD_ROWS_PER_SLOT * slots // max(1, identity.buffer_size)
        self.credit = max(2, min(MAX_ROW_GROUPS_IN_FLIGHT, ahead) + 1)
        self._workers: list[_Worker] = []

    def __enter__(self) -> WorkerPool:
        start = _Worker.fork if _single_threaded() else _Worker.exec
        try:
            for runtime in self.runtimes:
                self._workers.append(start((self.config, self.identity, runtime, os.getpid())))
        except BaseException:
            self._stop()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc_info: object) -> None:
        self._stop(at_once=exc_type is not None)

    def results(self, jobs: Iterable[RowGroupJob]) -> Iterator[tuple[int, ProducedRowGroup]]:
        """(position, ProducedRowGroup) as each finishes; a row group's failure is raised once
        the row groups handed out before it have finished."""
        jobs = iter(jobs)
        seq = 0
        exhausted = False
        failure: tuple[int, BaseException] | None = None

        def feed() -> None:
            nonlocal seq, exhausted
            while not exhausted and failure is None:
                worker = min(self._workers, key=lambda w: len(w.outstanding))
                if worker.finished or len(worker.outstanding) >= self.credit:
                    return
                job = next(jobs, None)
                if job is None:
                    exhausted = True
                    for w in self._workers:
                        w.send(("end",))
                    return
                worker.send(("job", seq, job))
                worker.outstanding[job.index] = seq
                seq += 1

        feed()
        while True:
            waiting = [
                w
                for w in self._workers
                if w.outstanding and (failure is None or min(w.outstanding.values()) < failure[0])
            ]
            if not waiting:
                break
            for conn in multiprocessing.connection.wait([w.conn for w in waiting]):
                worker = next(w for w in waiting if w.conn is conn)
                kind, value = worker.receive()
                if kind == "part":
                    yield worker.outstanding.pop(value.index), value
                elif kind == "failed":
                    # The worker finished and sent every row group before the failed one: the
                    # failed one is the oldest it still holds.
                    failed = min(worker.outstanding.values())
                    worker.outstanding.clear()
                    worker.finished = True
                    if failure is None or failed < failure[0]:
                        failure = (failed, value)
                else:
                    raise value
            feed()
        if failure is not None:
            raise failure[1]

    def _stop(self, at_once: bool = True) -> None:
        """After a normal end the workers exit by themselves; otherwise they are terminated
        (their answered calls are in the response cache already)."""
        for worker in self._workers:
            worker.send(("end",))
        deadline = time.monotonic() + (0.0 if at_once else STOP_GRACE_S)
        for worker in self._workers:
            worker.stop(deadline)


class _Worker:
    def __init__(
        self, process: multiprocessing.process.BaseProcess | _Exec, conn: multiprocessing.connection.Connection
    ):
        self.process = process
        self.conn = conn
        #: Row-group index -> position, for row groups handed out and not yet sent back.
        self.outstanding: dict[int, int] = {}
        self.finished = False

    @classmethod
    def fork(cls, args: tuple) -> _Worker:
        context = multiprocessing.get_context("fork")
        parent_conn, child_conn = context.Pipe()
        process = context.Process(target=_worker_main, args=(child_conn, *args), name="dd-worker", daemon=True)
        process.start()
        child_conn.close()
        return cls(process, parent_conn)

    @classmethod
    def exec(cls, args: tuple) -> _Worker:
        ours, theirs = socket.socketpair()
        source_root = str(Path(__file__).resolve().parents[2])
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [source_root, os.environ.get("PYTHONPATH")]))}
        with theirs:
            process = _Exec([sys.executable, "-m", __name__, str(theirs.fileno())], pass_fds=[theirs.fileno()], env=env)
        conn = multiprocessing.connection.Connection(ours.detach())
        conn.send(args)
        return cls(process, conn)

    def send(self, message: tuple) -> None:
        with contextlib.suppress(OSError):
            self.conn.send(message)

    def receive(self) -> tuple[str, object]:
        try:
            return self.conn.recv()
        except (EOFError, OSError):
            self.process.join(timeout=1.0)
            code = self.process.exitcode
            how = f"was killed by signal {-code}" if code is not None and code < 0 else f"exited with code {code}"
            return "fatal", GenerationError(
                f"a worker process {how} (out of memory?); the row groups finished so far are recorded, "
                "and resuming continues from there"
            )

    def stop(self, deadline: float) -> None:
        self.process.join(timeout=max(0.0, deadline - time.monotonic()))
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(timeout=2.0)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        self.conn.close()


class _Exec(subprocess.Popen):
    """A worker interpreter with the process interface the pool uses."""

    @property
    def exitcode(self) -> int | None:
        return self.poll()

    def is_alive(self) -> bool:
        return self.poll() is None

    def join(self, timeout: float | None = None) -> None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.wait(timeout)


def _worker_main(
    conn: multiprocessing.connection.Connection,
    config: DatasetConfig,
    identity: RowGroupIdentity,
    runtime: LLMRuntime,
    parent_pid: int,
) -> None:
    _die_with_parent(parent_pid)
    # A forked worker inherits its parent's whole heap (in a Dagster run: Dagster and the asset
    # graph). Frozen, the collector's full passes skip it instead of walking it (and copying
    # every page it touches).
    gc.freeze()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group: the parent decides
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    refuse_pandas()  # a worker only makes row groups: pyarrow would load it for nothing
    try:
        with produce_in_process(config, identity, _inbox(conn), runtime) as produced:
            for _, part in produced:
                conn.send(("part", part))
    except GenerationError as exc:
        _send_error(conn, "failed", exc)
    except BaseException as exc:
        _send_error(conn, "fatal", exc)
    finally:
        conn.close()


def _inbox(conn: multiprocessing.connection.Connection) -> Iterator[RowGroupJob]:
    while True:
        try:
            message = conn.recv()
        except EOFError:
            return
        if message[0] != "job":
            return
        yield message[2]


def _send_error(conn: multiprocessing.connection.Connection, kind: str, exc: BaseException) -> None:
    try:
        pickle.dumps(exc)
    except Exception:
        exc = GenerationError(f"{type(exc).__name__}: {exc}")
    with contextlib.suppress(OSError):
        conn.send((kind, exc))


def _die_with_parent(parent_pid: int) -> None:
    """A forked worker: the kernel sends SIGKILL when the parent dies (Linux). Started by a
    fork server, or elsewhere: a watchdog thread checks that the parent is alive."""
    if sys.platform.startswith("linux") and os.getppid() == parent_pid:
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.prctl(1, signal.SIGKILL, 0, 0, 0) == 0:  # PR_SET_PDEATHSIG
                if os.getppid() != parent_pid:  # the parent died before the call
                    os._exit(1)
                return

    def watch() -> None:
        while True:
            time.sleep(0.5)
            try:
                os.kill(parent_pid, 0)
            except ProcessLookupError:
                os._exit(1)

    threading.Thread(target=watch, name="dd-parent-watch", daemon=True).start()


if __name__ == "__main__":  # a worker started by ``_Worker.exec``
    _connection = multiprocessing.connection.Connection(int(sys.argv[1]))
    _worker_main(_connection, *_connection.recv())
