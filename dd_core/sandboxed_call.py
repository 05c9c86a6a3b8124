"""The sandbox process of a ``callable`` validator (see ``dd_core.engine.callable_sandbox``):
``python -m dd_core.sandboxed_call module:function`` reads a pickled batch of rows on stdin,
calls the function, and writes ``{"verdicts": [[is_valid, reason], ...]}`` or ``{"error": ...}``
as JSON on stdout. Standard library only, so it starts in a few tens of milliseconds plus the
function's own imports; what the function prints goes to stderr.
"""

from __future__ import annotations

import importlib
import json
import os
import pickle
import sys
from typing import Any

#: Characters of a reason kept.
REASON_CHARS = 300


def _verdict(item: Any, i: int) -> list:
    if isinstance(item, dict):
        valid, reason = item.get("is_valid"), item.get("reason")
    elif isinstance(item, (tuple, list)) and len(item) == 2:
        valid, reason = item
    else:
        valid, reason = item, None
    if type(valid).__name__ not in ("bool", "bool_"):  # Python's or numpy's
        raise TypeError(
            f"verdict {i} is {str(item)[:60]!r}: give True/False, (is_valid, reason) or "
            "{'is_valid': ..., 'reason': ...}"
        )
    valid = bool(valid)
    return [valid, None if valid or reason is None else str(reason)[:REASON_CHARS]]


def call(function: str) -> dict[str, Any]:
    module_name, _, name = function.partition(":")
    try:
        module = importlib.import_module(module_name)
    except BaseException as exc:  # an import error, or whatever the module raises when loaded
        return {"error": f"cannot import module '{module_name}': {type(exc).__name__}: {exc}"[:1000]}
    fn = getattr(module, name, None)
    if not callable(fn):
        return {"error": f"module '{module_name}' has no function '{name}'"}
    batch = pickle.load(sys.stdin.buffer)
    try:
        verdicts = [_verdict(item, i) for i, item in enumerate(fn(batch))]
    except BaseException as exc:
        return {"error": f"raised {type(exc).__name__}: {exc}"[:1000]}
    return {"verdicts": verdicts}


if __name__ == "__main__":
    answer = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    json.dump(call(sys.argv[1]), answer)
    answer.flush()
