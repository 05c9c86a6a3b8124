"""Run a benchmark workload in its own process and read its time and memory.

The workload prints one JSON object on its last stdout line (``parse_json=False``: it need
not); the parent adds the whole process's wall time (start-up included), its CPU seconds, and
its own peak resident set size from ``os.wait4`` (ru_maxrss, KiB on Linux). With
``tree=True`` it also samples the process tree (the workload and its worker processes) every
``TREE_SAMPLE_S``: ``tree_peak_rss_mb``, the largest sum of their RSS seen at one instant, and
``tree_sum_of_peaks_mb``, the sum of each process's own peak RSS (Linux's VmHWM, read last
when seen) -- an upper bound, since forked workers share pages that each RSS counts again.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time

TREE_SAMPLE_S = 0.02


def run_measured(
    command: list[str],
    *,
    env: dict | None = None,
    timeout: float = 3600,
    cwd: str | None = None,
    parse_json: bool = True,
    tree: bool = False,
) -> dict:
    started = time.monotonic()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=None, env=env, cwd=cwd, text=True)
    sampler = _TreeSampler(proc.pid) if tree else None
    chunks: list[str] = []
    reader = threading.Thread(target=lambda: chunks.append(proc.stdout.read()), daemon=True)
    reader.start()
    timer = threading.Timer(timeout, proc.kill)
    timer.start()
    try:
        _, status, rusage = os.wait4(proc.pid, 0)
    finally:
        timer.cancel()
        if sampler:
            sampler.stop()
    wall_s = time.monotonic() - started
    proc.returncode = os.waitstatus_to_exitcode(status)  # so Popen does not reap again
    reader.join(timeout=10)
    proc.stdout.close()
    stdout = "".join(chunks)
    name = os.path.basename(command[1]) if len(command) > 1 else command[0]
    if proc.returncode != 0:
        why = f"killed after the {timeout}s timeout" if proc.returncode == -9 else f"exited with {proc.returncode}"
        raise RuntimeError(f"{name} {why}:\n{stdout[-2000:]}")
    lines = [line for line in stdout.splitlines() if line.strip()]
    if parse_json and not lines:
        raise RuntimeError(f"{name} printed nothing on stdout")
    result = json.loads(lines[-1]) if parse_json else {}
    result["wall_s"] = round(wall_s, 4)
    if sampler:
        result["tree_peak_rss_mb"] = round(sampler.peak_sum / 2**20, 1)
        result["tree_sum_of_peaks_mb"] = round(sum(sampler.peaks.values()) / 2**20, 1)
        result["tree_processes"] = len(sampler.peaks)
    result["peak_rss_mb"] = round(rusage.ru_maxrss / 1024.0, 1)
    # CPU seconds of the process and the children it waited for (e.g. worker processes).
    result["cpu_s"] = round(rusage.ru_utime + rusage.ru_stime, 3)
    return result


class _TreeSampler:
    """Samples the RSS of a process and its descendants in a thread (psutil)."""

    def __init__(self, pid: int):
        import psutil

        self._root = psutil.Process(pid)
        self._psutil = psutil
        self.peak_sum = 0
        self.peaks: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(TREE_SAMPLE_S):
            try:
                procs = [self._root, *self._root.children(recursive=True)]
            except self._psutil.Error:
                return
            total = 0
            for p in procs:
                try:
                    total += p.memory_info().rss
                    self.peaks[p.pid] = max(self.peaks.get(p.pid, 0), _hwm(p.pid))
                except (self._psutil.Error, OSError):
                    continue
            self.peak_sum = max(self.peak_sum, total)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def _hwm(pid: int) -> int:
    """The process's own peak RSS in bytes (VmHWM)."""
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0
