"""Run a benchmark workload in its own process and read its peak RSS (stdlib only).

The workload prints one JSON object on its last stdout line; the parent adds the child's
own peak resident set size from ``os.wait4`` (ru_maxrss, KiB on Linux).
"""

from __future__ import annotations

import json
import os
import subprocess
import threading


def run_measured(command: list[str], *, env: dict | None = None, timeout: float = 3600, cwd: str | None = None) -> dict:
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=None, env=env, cwd=cwd, text=True)
    chunks: list[str] = []
    reader = threading.Thread(target=lambda: chunks.append(proc.stdout.read()), daemon=True)
    reader.start()
    timer = threading.Timer(timeout, proc.kill)
    timer.start()
    try:
        _, status, rusage = os.wait4(proc.pid, 0)
    finally:
        timer.cancel()
    proc.returncode = os.waitstatus_to_exitcode(status)  # so Popen does not reap again
    reader.join(timeout=10)
    proc.stdout.close()
    stdout = "".join(chunks)
    name = os.path.basename(command[1]) if len(command) > 1 else command[0]
    if proc.returncode != 0:
        why = f"killed after the {timeout}s timeout" if proc.returncode == -9 else f"exited with {proc.returncode}"
        raise RuntimeError(f"{name} {why}:\n{stdout[-2000:]}")
    lines = [line for line in stdout.splitlines() if line.strip()]
    if not lines:
        raise RuntimeError(f"{name} printed nothing on stdout")
    result = json.loads(lines[-1])
    result["peak_rss_mb"] = round(rusage.ru_maxrss / 1024.0, 1)
    # CPU seconds of the process and the children it waited for (e.g. worker processes).
    result["cpu_s"] = round(rusage.ru_utime + rusage.ru_stime, 3)
    return result
