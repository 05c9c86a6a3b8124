"""Expression columns: a sandboxed Jinja template compiled once, rendered per row."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from functools import lru_cache

import jinja2
import pyarrow as pa
from jinja2 import nodes

from dd_core.config.columns import ExpressionColumn
from dd_core.config.render_limits import RenderLimitExceeded, RenderLimits
from dd_core.config.templates import compile_template, render
from dd_core.engine.context import RowGroupContext
from dd_core.errors import ConfigIssue, DDConfigError

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
_TRUE = {"true", "1", "yes", "y", "t"}
_FALSE = {"false", "0", "no", "n", "f"}


def _to_int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        number = float(text)
        if not number.is_integer():
            raise
        return int(number)


def _to_bool(text: str) -> bool:
    low = text.lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise ValueError(text)


_CONVERTERS = {
    "str": (str, pa.string()),
    "int": (_to_int, pa.int64()),
    "float": (float, pa.float64()),
    "bool": (_to_bool, pa.bool_()),
}


def render_rows(source: str, column: str, field: str, contexts: list[dict], limits: RenderLimits) -> list[str]:
    """Render one template for many rows, each cell within ``limits``; failures name the column."""
    template = compile_template(source)
    try:
        return render(template, contexts, limits)
    except RenderLimitExceeded as exc:
        raise DDConfigError([ConfigIssue(f"template exceeds its render limits: {exc}", column, field)]) from exc
    except RecursionError as exc:
        raise DDConfigError(
            [ConfigIssue("template recursion is too deep (does a macro call itself without end?)", column, field)]
        ) from exc
    except MemoryError as exc:
        raise DDConfigError(
            [ConfigIssue("template ran out of memory while rendering one cell; lower its work per row", column, field)]
        ) from exc
    except jinja2.exceptions.SecurityError as exc:
        raise DDConfigError([ConfigIssue(f"template refused by the sandbox: {exc}", column, field)]) from exc
    except jinja2.UndefinedError as exc:
        raise DDConfigError([ConfigIssue(f"template uses something undefined: {exc}", column, field)]) from exc
    except (TypeError, ValueError, ArithmeticError, jinja2.TemplateError) as exc:
        raise DDConfigError([ConfigIssue(f"template failed to render: {exc}", column, field)]) from exc


def compile_renderer(source: str, column: str, field: str, limits: RenderLimits) -> Callable[[dict], str]:
    """A template as a function of one row's context, with ``render_rows``' errors and limits.

    Templates that only splice values into text (``"Answer: {{ question }}"``,
    ``"{{ person.first_name }} ({{ city }})"``: the usual prompt or summary) skip Jinja's
    per-call set-up and join the parts directly, which renders the same text: Jinja writes
    ``str(value)``, its lexer already normalised the literal text, and on a dict
    ``name.field`` is ``value[field]`` when ``field`` is no dict attribute. Anything else
    (filters, tags, a missing name or key, a value that is not a dict, a result longer than
    ``limits.max_output_chars``) goes through Jinja, which raises the right error.
    """

    def render(context: dict) -> str:
        return render_rows(source, column, field, [context], limits)[0]

    parts = spliced_parts(source)
    if parts is None:
        return render
    most = limits.max_output_chars

    def splice(context: dict) -> str:
        out = []
        try:
            for kind, name, key in parts:
                if kind is _TEXT:
                    out.append(name)
                    continue
                value = context[name]
                if kind is _FIELD:
                    if type(value) is not dict:
                        return render(context)
                    value = value[key]
                out.append(str(value))
        except KeyError:
            return render(context)  # Jinja's own undefined-name error
        text = "".join(out)
        return text if len(text) <= most else render(context)

    return splice


_TEXT, _NAME, _FIELD = "text", "name", "field"


@lru_cache(maxsize=256)
def spliced_parts(source: str) -> tuple[tuple[str, str, str | None], ...] | None:
    """[(kind, text or name, field)] when the template is only text, ``{{ name }}`` and
    ``{{ name.field }}``; else None."""
    tree = compile_template(source).environment.parse(source)
    parts: list[tuple[str, str, str | None]] = []
    for node in tree.body:
        if not isinstance(node, nodes.Output):
            return None
        for child in node.nodes:
            if isinstance(child, nodes.TemplateData):
                parts.append((_TEXT, child.data, None))
            elif isinstance(child, nodes.Name) and child.ctx == "load":
                parts.append((_NAME, child.name, None))
            elif (
                isinstance(child, nodes.Getattr)
                and isinstance(child.node, nodes.Name)
                and child.node.ctx == "load"
                and not child.attr.startswith("_")
                and not hasattr(dict, child.attr)  # {{ d.items }} is the method, not d["items"]
            ):
                parts.append((_FIELD, child.node.name, child.attr))
            else:
                return None
    return tuple(parts)


def row_contexts(names: set[str], ctx: RowGroupContext) -> list[dict]:
    columns = {name: ctx.python_values(name) for name in sorted(names)}
    return [dict(zip(columns, values)) for values in zip(*columns.values())] if columns else [{}] * ctx.num_rows


def expression(col: ExpressionColumn, ctx: RowGroupContext) -> pa.Array:
    parts = spliced_parts(col.expr)
    texts = None if parts is None else spliced_column(parts, ctx, ctx.render_limits.max_output_chars)
    if texts is None:
        contexts = row_contexts(col.dependencies()["expr"], ctx)
        if parts is None:  # one render call for the whole column
            texts = render_rows(col.expr, col.name, "expr", contexts, ctx.render_limits)
        else:
            render = compile_renderer(col.expr, col.name, "expr", ctx.render_limits)
            texts = [render(context) for context in contexts]
    return pa.array([convert_value(text, col, row) for row, text in enumerate(texts)], expression_type(col))


def spliced_column(parts: tuple[tuple[str, str, str | None], ...], ctx: RowGroupContext, most: int) -> list[str] | None:
    """``compile_renderer``'s splice for a whole column at once: each value part converted with
    ``str`` a column at a time (a struct's field read from its child array), then joined per
    row. None when some row needs Jinja (a missing name or key, a value that is no dict, a
    result past ``most`` characters): the caller then renders row by row, which raises the
    right error."""
    pieces: list = []
    for kind, name, key in parts:
        if kind is _TEXT:
            pieces.append(itertools.repeat(name))
            continue
        if name not in ctx.columns:
            return None
        array = ctx.columns[name]
        if kind is _FIELD:
            if pa.types.is_struct(array.type) and array.null_count == 0 and array.type.get_field_index(key) >= 0:
                values = array.field(key).to_pylist()
            else:
                rows = ctx.python_values(name)
                if not all(type(row) is dict and key in row for row in rows):
                    return None
                values = [row[key] for row in rows]
        else:
            values = ctx.python_values(name)
        pieces.append(list(map(str, values)))
    if any(isinstance(piece, list) for piece in pieces):
        texts = ["".join(row) for row in zip(*pieces)]
    else:  # only text: the same cell in every row
        texts = ["".join(next(piece) for piece in pieces)] * ctx.num_rows
    return texts if all(len(text) <= most for text in texts) else None


def expression_type(col: ExpressionColumn) -> pa.DataType:
    return _CONVERTERS[col.dtype][1]


def convert_value(text: str, col: ExpressionColumn, row: int) -> str | int | float | bool | None:
    """Cast rendered text to the column's dtype. Empty text is null (str stays ""), never a dropped row."""
    if col.dtype == "str":
        return text
    text = text.strip()
    if not text:
        return None
    try:
        value = _CONVERTERS[col.dtype][0](text)
    except (ValueError, OverflowError) as exc:
        raise DDConfigError(
            [ConfigIssue(f"row {row} rendered {text[:80]!r}, which is not a {col.dtype}", col.name, "dtype")]
        ) from exc
    if col.dtype == "int" and not INT64_MIN <= value <= INT64_MAX:
        raise DDConfigError(
            [ConfigIssue(f"row {row} rendered {text[:80]!r}, which does not fit in a 64-bit int", col.name, "dtype")]
        )
    return value
