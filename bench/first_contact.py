"""Time to the message when nothing listens on a model's base_url (target: within 2 s).

    .venv/bin/python bench/first_contact.py [--repeat 10]

Runs ``ddsynth preview`` and ``ddsynth generate`` of ``examples/support_tickets_llm.yaml``, as it
is, in a fresh network namespace (loopback only: nothing listens on 127.0.0.1:8000 whatever runs on
this machine), each ``--repeat`` times, and prints the median wall time to the exit-7 message and
the CPU seconds the command used (what its wall time comes to on an idle machine). The limit
beside it: ``ddsynth validate`` of the same config (start-up and config load, no network).
Before the endpoint check, the same preview spent ~7.5 s on retries and then lost the row group.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "support_tickets_llm.yaml"
DDSYNTH = Path(sys.executable).parent / "ddsynth"


def in_namespace(*args: object) -> list[str]:
    unshare = ["unshare", "--net"] if os.geteuid() == 0 else ["unshare", "--map-root-user", "--net"]
    return [*unshare, "sh", "-c", 'ip link set lo up && exec "$@"', "sh", str(DDSYNTH), *map(str, args)]


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(argv: list[str], expect: int, repeat: int) -> tuple[float, float, float, str]:
    runs, cpu, message = [], [], ""
    for _ in range(repeat):
        start, start_cpu = time.perf_counter(), cpu_seconds()
        done = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT)
        runs.append(time.perf_counter() - start)
        cpu.append(cpu_seconds() - start_cpu)
        if done.returncode != expect:
            raise SystemExit(f"{' '.join(argv)}: exit {done.returncode}, expected {expect}\n{done.stderr}")
        message = done.stderr.strip() or done.stdout.strip().splitlines()[-1]
    return statistics.median(runs), max(runs), statistics.median(cpu), message


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=10)
    repeat = ap.parse_args().repeat
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; {repeat} runs each, medians")
    print(f"{'':40s} {'wall':>7s} {'(max)':>8s} {'cpu':>7s}")
    with tempfile.TemporaryDirectory() as tmp:
        cases = [
            ("ddsynth preview  (nothing listening)", in_namespace("preview", EXAMPLE, "-n", 3), 7),
            (
                "ddsynth generate (nothing listening)",
                in_namespace("generate", EXAMPLE, "-n", 10, "--artifact-path", tmp),
                7,
            ),
            ("limit: ddsynth validate", in_namespace("validate", EXAMPLE), 0),
        ]
        messages = []
        for label, argv, code in cases:
            median, worst, cpu, message = timed(argv, code, repeat)
            messages.append(message)
            print(f"{label:40s} {median:6.2f} s ({worst:5.2f} s) {cpu:6.2f} s")
        print(f"message: {messages[0]}")


if __name__ == "__main__":
    main()
