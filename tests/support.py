"""Helpers shared by tests: paths, a runner for the real ``ddsynth`` command, and waits for events
(never for a length of time)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import aiohttp

from dd_core import load_config
from dd_core.engine.llm.runtime import LLMRuntime
from dd_core.engine.llm.structured_check import refused_modes

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


def run_dd(
    *args: object, cwd: Path | None = None, env: dict | None = None, timeout: float = 120
) -> subprocess.CompletedProcess:
    """Run the dd CLI in a subprocess, exactly as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "dd_core", *map(str, args)],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def dd_generate_dataset(config_path: Path, artifact_path: Path, num_records: int, buffer_size: int):
    """The dataset `ddsynth generate` makes of a config (without injected faults), as a DataFrame:
    what a Dagster-made dataset must equal."""
    from dd_core import load_config, load_dataset

    env = {k: v for k, v in os.environ.items() if not k.startswith("DD_FAULT_")}
    args = [
        Path(sys.executable).parent / "ddsynth",
        "generate",
        config_path,
        "--num-records",
        num_records,
        "--buffer-size",
        buffer_size,
        "--artifact-path",
        artifact_path,
    ]
    done = subprocess.run([str(a) for a in args], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return load_dataset(Path(artifact_path) / load_config(config_path).name)


def wait_for(predicate, timeout: float, what: str) -> None:
    """Poll ``predicate`` every 20 ms until it is true; fail naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


@contextmanager
def released_when(server, name: str, predicate, what: str, timeout: float = 120):
    """Release the test server's hold ``name`` once ``predicate(server.stats())`` is true,
    watched from a thread while the block runs; the block fails naming ``what`` if that never
    happened (after ``timeout`` s the hold is released anyway, so nothing waits forever)."""
    happened, stop = threading.Event(), threading.Event()

    def watch() -> None:
        try:
            deadline = time.monotonic() + timeout
            while not stop.is_set() and time.monotonic() < deadline:
                if predicate(server.stats()):
                    happened.set()
                    break
                stop.wait(0.02)
        finally:
            server.release(name)

    watcher = threading.Thread(target=watch, name=f"release-{name}", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        stop.set()
        watcher.join()
    if not happened.is_set():
        raise AssertionError(f"the hold {name!r} was released without {what}")


def answered_calls_on_disk(folder: Path) -> int:
    """Finished LLM calls in the response caches under ``folder`` (one line each)."""
    return sum(path.read_bytes().count(b"\n") for path in folder.rglob("llm-cache/rg_?????.jsonl"))


@contextmanager
def answers_stopped(server, folder: Path, timeout: float = 60, checks: int = 0):
    """Hold every new request at the test server and wait until each answer it sent is in a
    response cache under ``folder`` (but the ``checks`` answers of the structured-output check
    before row group 0, which no cache keeps): a client SIGKILLed in the block loses no answer it was sent.
    On leaving, wait until the server has dropped the dead client's held requests, then clear
    the rules (released earlier, they would be answered to nobody and counted)."""
    server.set_faults([{"kind": "hold", "name": "stopped"}])

    def settled() -> bool:
        stats = server.stats()
        return (
            stats["in_flight"] == stats["held"].get("stopped", 0)
            and answered_calls_on_disk(folder) + checks == stats["succeeded"]
        )

    try:
        wait_for(settled, timeout, "every answered call to reach a response cache")
        yield
        wait_for(lambda: server.stats()["in_flight"] == 0, timeout, "the server to drop the killed client's requests")
    finally:
        server.clear_faults()


@contextmanager
def batch_clock_moved_by_polls(server, step_s: float = 0.1, until=lambda stats: False):
    """Stop the test server's batch clock and, while the block runs, move it on by ``step_s``
    whenever a client has polled a batch since the last move (a poll never finds the clock more
    than two steps further than the one before, however slowly the client polls). Once
    ``until(server.batch_stats())`` holds (checked before each move) the clock stays where it
    is: batches in progress then stay in progress until the test moves the clock again."""
    server.stop_batch_clock()
    stop = threading.Event()

    def move() -> None:
        polls = 0
        while not stop.is_set():
            stats = server.batch_stats()
            if until(stats):
                return
            if stats["counts"]["poll"] > polls:
                polls = stats["counts"]["poll"]
                server.advance_batch_clock(step_s)
            stop.wait(0.01)

    mover = threading.Thread(target=move, name="batch-clock", daemon=True)
    mover.start()
    try:
        yield
    finally:
        stop.set()
        mover.join()


def polled_in_progress(stats: dict, batch_ids) -> bool:
    """Whether a client has polled each of these batches and found it in progress."""
    seen = {entry["batch_id"] for entry in stats["log"] if entry["op"] == "poll" and entry["status"] == "in_progress"}
    return set(batch_ids) <= seen


def structured_check_spend(server, config: dict):
    """What the structured-output check of ``config``'s first model costs at ``server`` (a
    deterministic test server answers it alike every time): made again here, by hand."""
    model = load_config(config).models[0]

    async def check():
        async with aiohttp.ClientSession() as session:
            return await refused_modes(session, [(model, LLMRuntime().endpoint(model), server.base_url)])

    return asyncio.run(check()).spend[model.alias]
