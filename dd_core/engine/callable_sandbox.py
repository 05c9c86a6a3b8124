"""A ``callable`` validator's function, run in a process of its own (``dd_core.sandboxed_call``).

Sandboxed from the engine in this sense: the function runs in a fresh interpreter that gets a pickled copy of one batch of rows
(only its target columns) and answers with JSON, which the engine checks before using. So it
cannot read or change the engine's state (its caches, claims, event loop, other rows), cannot
run code in the engine through what it returns (JSON is data, a pickle would not be), cannot
hang the run (killed after ``timeout_s``), and a crash, ``os._exit`` or an out-of-memory kill
fails the validator with a message instead of the process. A fresh process per batch also
keeps the verdicts free of state carried over from earlier batches (whose order depends on
timing). It is not a security boundary: the function runs with the user's own permissions,
as any code named in their config does.

The function takes a list of rows (dicts of the target columns' values) and returns one item
per row: ``True``/``False``, ``(is_valid, reason)`` or ``{"is_valid": ..., "reason": ...}``.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import tempfile
from typing import Any

from dd_core.config import DatasetConfig
from dd_core.config.validation_columns import ValidationColumn
from dd_core.errors import ConfigIssue, DDConfigError

#: Bytes of the function's answer per row (a reason is cut to 300 characters on the way).
ANSWER_BYTES_PER_ROW = 4096
#: Characters of the function's own error output quoted in a message.
STDERR_TAIL = 600


def run_callable(col: ValidationColumn, rows: list[dict[str, Any]]) -> list[tuple[bool, str | None]]:
    """The function's verdicts on ``rows``; a ``DDConfigError`` naming the column when it cannot
    be imported, raises, times out, dies or answers in another shape."""
    batch = [{target: row[target] for target in col.target_columns} for row in rows]
    answer = _run(col, pickle.dumps(batch, protocol=pickle.HIGHEST_PROTOCOL), len(batch))
    verdicts = answer.get("verdicts")
    if not isinstance(verdicts, list) or len(verdicts) != len(rows):
        got = len(verdicts) if isinstance(verdicts, list) else type(verdicts).__name__
        _fail(col, f"returned {got} verdict(s) for a batch of {len(rows)} rows; return one per row")
    checked = []
    for v in verdicts:
        if not (isinstance(v, list) and len(v) == 2 and isinstance(v[0], bool) and isinstance(v[1], (str, type(None)))):
            _fail(col, f"answered {str(v)[:60]!r}, not a verdict")
        checked.append((v[0], v[1]))
    return checked


def check_callables(config: DatasetConfig) -> None:
    """Import every callable validator's function (in the sandbox) and call it on an empty batch:
    a missing module fails a run before any LLM call."""
    for col in config.columns:
        if isinstance(col, ValidationColumn) and col.validator == "callable":
            run_callable(col, [])


def _fail(col: ValidationColumn, message: str) -> None:
    raise DDConfigError([ConfigIssue(f"validator function {col.function}: {message}", col.name, "function")])


def _run(col: ValidationColumn, batch: bytes, rows: int) -> dict[str, Any]:
    # The sandbox imports what the engine could import: the same path, the same working folder.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    with tempfile.TemporaryFile() as answer, tempfile.TemporaryFile() as stderr:
        try:
            done = subprocess.run(
                [sys.executable, "-m", "dd_core.sandboxed_call", col.function],
                input=batch,
                stdout=answer,
                stderr=stderr,
                env=env,
                timeout=col.timeout_s,
                check=False,
            )
        except subprocess.TimeoutExpired:
            _fail(col, f"took more than timeout_s ({col.timeout_s:g} s) over a batch of {rows} rows")
        size = answer.seek(0, os.SEEK_END)
        answer.seek(0)
        limit = ANSWER_BYTES_PER_ROW * (rows + 1)
        text = answer.read(limit + 1)
        stderr.seek(max(0, stderr.seek(0, os.SEEK_END) - STDERR_TAIL))
        tail = " ".join(stderr.read().decode("utf-8", "replace").split())
    if size > limit:
        _fail(col, f"answered {size:,} bytes for {rows} rows; return one short verdict per row")
    try:
        data = json.loads(text) if text else None
    except ValueError:
        data = None
    if not isinstance(data, dict):
        how = f"killed by signal {-done.returncode}" if done.returncode < 0 else f"exited with code {done.returncode}"
        _fail(col, f"its process {how} without an answer{f' ({tail})' if tail else ''}")
    if "error" in data:
        _fail(col, str(data["error"]))
    return data
