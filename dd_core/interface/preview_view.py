"""How ``ddsynth preview`` shows records: plain lines into a pipe, rich tables on a terminal.

Every value is shown literally (``dd_core.interface.text``): structs and lists as compact JSON,
markup-like text as it is, long text cut (to ``MAX_CHARS`` characters and ``MAX_LINES`` lines,
``GRID_MAX_CHARS`` and ``GRID_MAX_LINES`` in a narrow table cell) with its full length said. On a
terminal the records form one table (a column per dataset column) when each column can have
``MIN_COLUMN_WIDTH`` characters, else one two-column table per record.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from dd_core.interface.text import literal
from dd_core.redaction import scrub

if TYPE_CHECKING:
    from rich.console import RenderableType

MAX_CHARS = 300
MAX_LINES = 8
GRID_MAX_CHARS = 120
GRID_MAX_LINES = 4
MIN_COLUMN_WIDTH = 14
#: Column names are padded to the longest, up to this many characters, in plain lines.
NAME_WIDTH = 24

Record = dict[str, Any]


def shown(value: object, max_chars: int = MAX_CHARS, max_lines: int = MAX_LINES) -> str:
    """One value as text a person can read, at most ``max_chars`` characters and ``max_lines`` lines
    (and the length it had)."""
    if value is None:
        text = "null"
    elif isinstance(value, (dict, list, tuple)):
        text = json.dumps(value, default=str, ensure_ascii=False)
    else:
        text = str(value)
    text = literal(scrub(text))
    lines = text.split("\n")
    if len(text) <= max_chars and len(lines) <= max_lines:
        return text
    cut = "\n".join(lines[:max_lines])[:max_chars].rstrip()
    return f"{cut} ... ({len(text):,} characters" + (f", {len(lines):,} lines)" if len(lines) > 1 else ")")


def plain_lines(records: Sequence[Record]) -> Iterator[str]:
    """Each record as a block: a heading, then one ``name  value`` line per column (a value's
    further lines indented under its first)."""
    for number, record in enumerate(records, start=1):
        yield f"record {number} of {len(records)}"
        width = min(NAME_WIDTH, max((len(n) for n in record), default=0))
        for name, value in record.items():
            head = f"  {literal(name):<{width}}  "
            first, *rest = shown(value).split("\n")
            yield head + first
            yield from (" " * len(head) + line for line in rest)


def terminal_renderables(records: Sequence[Record], width: int) -> Iterator[RenderableType]:
    # rich is loaded on a terminal only (see dd_core.interface.cli.styled).
    from rich.table import Table
    from rich.text import Text

    names = list(records[0]) if records else []
    if len(names) * MIN_COLUMN_WIDTH <= width:
        table = Table(show_lines=True)
        for name in names:
            table.add_column(Text(literal(name)), overflow="fold")
        for record in records:
            table.add_row(*(Text(shown(value, GRID_MAX_CHARS, GRID_MAX_LINES)) for value in record.values()))
        yield table
        return
    for number, record in enumerate(records, start=1):
        table = Table(title=Text(f"record {number} of {len(records)}"), title_justify="left", show_header=False)
        table.add_column("column", overflow="fold")
        table.add_column("value", overflow="fold")
        for name, value in record.items():
            table.add_row(Text(literal(name)), Text(shown(value)))
        yield table


def summary(records: Sequence[Record], source: str, *, with_verdicts: bool = False) -> str:
    """The last line. ``with_verdicts``: the records are an acceptance rule's candidates (with
    ``candidate`` and ``verdict`` fields), so the accepted ones are the records previewed."""
    columns = len(records[0]) if records else 0
    if not with_verdicts:
        return (
            f"Previewed {len(records)} record(s) of {columns} column(s) from {source}; nothing was written "
            "(ddsynth generate writes a dataset)."
        )
    accepted = sum(1 for record in records if record.get("verdict") == "accepted")
    return (
        f"Previewed {accepted} record(s) of {max(columns - 2, 0)} column(s) from {source}, drawn from "
        f"{len(records)} candidate(s) ({len(records) - accepted} rejected by the rule); nothing was written "
        "(ddsynth generate writes a dataset)."
    )
