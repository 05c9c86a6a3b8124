"""What a dataset was paid for, per model, in ``metadata.json``: the sum of its row groups' own
records (each row-group file says what was paid for it; see ``engine.llm.cost.priced``).

``llm_spend`` holds per model alias the requests and tokens paid for (and ``cost_usd`` for a
model with a price), ``llm_cost_usd`` their total cost. A row group recorded again (a partial
last row group completed when the target grows) replaces its earlier share: the shares of
partial row groups are kept in ``llm_spend_partial`` for that.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

SPEND = "llm_spend"
COST = "llm_cost_usd"
PARTIAL = "llm_spend_partial"


def row_group_spend(text: str) -> dict[str, dict[str, Any]]:
    """A row-group file's ``llm_spend`` record (empty for files written before dd kept it).
    Only amounts are kept (per model alias, finite numbers): a record of another shape counts
    as nothing rather than failing a resume or putting NaN into the dataset's cost."""
    try:
        data = json.loads(text) if text else {}
    except ValueError:
        return {}
    if not isinstance(data, dict):
        return {}
    return {
        alias: {name: v for name, v in fields.items() if _is_amount(v)}
        for alias, fields in data.items()
        if isinstance(fields, dict)
    }


def _is_amount(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def account(extra: dict[str, Any], index: int, spend: Mapping[str, Mapping[str, Any]], *, partial: bool) -> None:
    """Add row group ``index``'s spend to the dataset's totals in metadata ``extra`` (replacing
    what an earlier, partial version of it added)."""
    totals: dict[str, dict[str, Any]] = extra.get(SPEND, {})
    earlier = extra.get(PARTIAL, {})
    _add(totals, earlier.pop(str(index), {}), -1)
    _add(totals, spend, 1)
    if partial and spend:
        earlier[str(index)] = dict(spend)
    if earlier:
        extra[PARTIAL] = earlier
    else:
        extra.pop(PARTIAL, None)
    _store(extra, totals)


def account_outside_row_groups(extra: dict[str, Any], spend: Mapping[str, Mapping[str, Any]]) -> None:
    """Add spend that belongs to no row group (the check, before a run's first row group, that
    each server takes its model's way of asking for JSON) to the dataset's totals."""
    totals: dict[str, dict[str, Any]] = extra.get(SPEND, {})
    _add(totals, spend, 1)
    _store(extra, totals)


def _store(extra: dict[str, Any], totals: dict[str, dict[str, Any]]) -> None:
    if not totals:
        return
    extra[SPEND] = dict(sorted(totals.items()))
    costs = [v["cost_usd"] for v in totals.values() if "cost_usd" in v]
    if costs:
        extra[COST] = sum(costs)


def _add(totals: dict[str, dict[str, Any]], spend: Mapping[str, Mapping[str, Any]], sign: int) -> None:
    for alias, fields in spend.items():
        entry = totals.setdefault(alias, {})
        for name, value in fields.items():
            if _is_amount(value):
                entry[name] = entry.get(name, 0) + sign * value
