"""What an acceptance rule's candidates came to, in ``metadata.json``: the sum of its row groups'
own records (each row-group file of a config with ``accept:`` says how many candidates it
generated, how many passed, how many lost an LLM cell, and its budget).

``acceptance`` holds the totals and ``rate`` (accepted / candidates). A row group recorded again
(a partial last row group completed when the target grows) replaces its earlier share, kept in
``acceptance_partial`` for that, as for cost (``storage.spend``).
"""

from __future__ import annotations

import json
from typing import Any

ACCEPTANCE = "acceptance"
PARTIAL = "acceptance_partial"
COUNTS = ("candidates", "accepted", "failed", "budget")


def row_group_acceptance(text: str) -> dict[str, int]:
    """A row-group file's record, or {} (none, or of another shape: never a failed resume)."""
    try:
        data = json.loads(text) if text else {}
    except ValueError:
        return {}
    if not isinstance(data, dict) or not all(_is_count(data.get(name)) for name in COUNTS):
        return {}
    return {name: data[name] for name in COUNTS}


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**63


def account_acceptance(extra: dict[str, Any], index: int, record: dict[str, int], *, partial: bool) -> None:
    """Add row group ``index``'s record to the totals in metadata ``extra``."""
    if not record and ACCEPTANCE not in extra:
        return
    stored = extra.get(ACCEPTANCE) if isinstance(extra.get(ACCEPTANCE), dict) else {}
    totals = {name: stored[name] if _is_count(stored.get(name)) else 0 for name in COUNTS}
    earlier = extra.get(PARTIAL) if isinstance(extra.get(PARTIAL), dict) else {}
    replaced = earlier.pop(str(index), {})
    for name in COUNTS:
        if isinstance(replaced, dict) and _is_count(replaced.get(name)):
            totals[name] = max(0, totals[name] - replaced[name])
    for name, value in record.items():
        totals[name] += value
    if partial and record:
        earlier[str(index)] = dict(record)
    if earlier:
        extra[PARTIAL] = earlier
    else:
        extra.pop(PARTIAL, None)
    totals["rate"] = round(totals["accepted"] / totals["candidates"], 6) if totals["candidates"] else 0.0
    extra[ACCEPTANCE] = totals
