"""Named crash points for fault-injection tests.

``DD_FAULT_POINT=<name>`` makes the process stop at that point: ``DD_FAULT_ACTION=kill``
(default) sends itself SIGKILL, ``pause`` sleeps until killed, ``wait`` waits until the file
``DD_FAULT_GATE`` exists (a test opens the gate when it chooses), ``wait-then-pause`` waits so
and pauses at the point's next hit (the process does one step the test released, then holds),
``raise`` raises ``InjectedFault`` (for in-process runs). ``DD_FAULT_HIT=N`` acts on the N-th
time the point is reached (default 1). Without the variable every point is a no-op.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections import Counter

_hits: Counter[str] = Counter()


class InjectedFault(RuntimeError):
    """Raised at a fault point with DD_FAULT_ACTION=raise."""


def reset_fault_hits() -> None:
    """Start counting hits from zero again (tests running several in-process runs)."""
    _hits.clear()


def fault_point(name: str) -> None:
    if os.environ.get("DD_FAULT_POINT") != name:
        return
    _hits[name] += 1
    hit = int(os.environ.get("DD_FAULT_HIT", "1"))
    action = os.environ.get("DD_FAULT_ACTION", "kill")
    if action == "wait-then-pause" and _hits[name] == hit + 1:
        action = "pause"
    elif _hits[name] != hit:
        return
    print(f"dd: fault point {name} reached", file=sys.stderr, flush=True)
    if action == "raise":
        raise InjectedFault(f"fault injected at {name} (hit {_hits[name]})")
    if action == "pause":
        while True:
            time.sleep(3600)
    if action in ("wait", "wait-then-pause"):
        while not os.path.exists(os.environ["DD_FAULT_GATE"]):
            time.sleep(0.01)
        return
    os.kill(os.getpid(), signal.SIGKILL)
