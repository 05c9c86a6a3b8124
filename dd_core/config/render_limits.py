"""What one template render (one cell) may cost: time and characters.

The sandbox (``dd_core.config.templates``) consults these checks at every point where a
template can make work grow: repetition and concatenation of strings and lists, powers of
integers, ``%`` and ``str.format`` widths, padding filters and methods, loop iterations, and
output written inside loops and macros. A check that fails raises ``RenderLimitExceeded``
(a sandbox ``SecurityError``), which the engine reports as a config error naming the column.
The same predictors run on constant expressions when a config is validated, so ``ddsynth validate``
refuses ``{{ 'a' * 10**9 }}`` before anything runs.
"""

from __future__ import annotations

import json
import re
import string
import threading
import time
from typing import Any

from jinja2.sandbox import SecurityError
from pydantic import Field

from dd_core.config.base import ConfigModel

#: Integers a template may build (``2 ** 100000`` has this many bits).
MAX_INT_BITS = 100_000
#: Lists a filter may split a value into (the sandbox's own limit on ``range``).
MAX_PIECES = 100_000


class RenderLimits(ConfigModel):
    """Per-cell limits of template rendering (``render_limits:`` in a config)."""

    timeout_s: float = Field(default=1.0, gt=0, le=3600, description="Seconds one cell's template may render for.")
    max_output_chars: int = Field(
        default=1_000_000,
        ge=1,
        le=1_000_000_000,
        description="Characters (or list items) one cell's template may produce, counting text built in loops and macros.",
    )


DEFAULT_LIMITS = RenderLimits()


class RenderLimitExceeded(SecurityError):
    """A template would pass its render limits; nothing was produced for the cell."""


class _Budget(threading.local):
    """The limits and deadline of the render running on this thread."""

    limits: RenderLimits = DEFAULT_LIMITS
    deadline: float = float("inf")
    chars: int = 0


_budget = _Budget()


def begin(limits: RenderLimits) -> tuple:
    """Start one cell's budget; returns what ``end`` restores (renders may nest)."""
    saved = (_budget.limits, _budget.deadline, _budget.chars)
    _budget.limits, _budget.deadline, _budget.chars = limits, time.monotonic() + limits.timeout_s, 0
    return saved


def end(saved: tuple) -> None:
    _budget.limits, _budget.deadline, _budget.chars = saved


def budget() -> _Budget:
    """This thread's budget (the render loop restarts its deadline for every cell)."""
    return _budget


def tick() -> None:
    """Stop a render that has used up its time."""
    if time.monotonic() > _budget.deadline:
        raise RenderLimitExceeded(
            f"rendering one cell took more than {_budget.limits.timeout_s:g} s (render_limits.timeout_s); "
            "the template does too much work per row"
        )


def check_size(size: int, what: str) -> None:
    limit = _budget.limits.max_output_chars
    if size > limit:
        raise RenderLimitExceeded(
            f"{what} would make {size:,} characters or items, more than render_limits.max_output_chars "
            f"({limit:,}) per cell"
        )


def count_output(text: str) -> None:
    """Text written inside a loop or macro counts towards the cell's output."""
    _budget.chars += len(text)
    check_size(_budget.chars, "the template's output")
    tick()


def check_final(text: str) -> None:
    check_size(len(text), "the template's output")


# --- operators -----------------------------------------------------------------------------

_SIZED = (str, bytes, list, tuple)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_binop(operator: str, left: Any, right: Any) -> None:
    tick()
    if operator == "*":
        for seq, times in ((left, right), (right, left)):
            if isinstance(seq, _SIZED) and _is_int(times):
                check_size(
                    len(seq) * max(times, 0), f"repeating a {type(seq).__name__} of length {len(seq)} {times:,} times"
                )
        if _is_int(left) and _is_int(right):
            _check_bits(left.bit_length() + right.bit_length(), "multiplying these integers")
    elif operator == "**":
        if _is_int(left) and _is_int(right) and right > 0 and abs(left) > 1:
            _check_bits(abs(left).bit_length() * right, f"{left} ** {right}")
    elif operator == "+":
        if isinstance(left, _SIZED) and isinstance(right, _SIZED):
            check_size(len(left) + len(right), "joining these values")
    elif operator == "%" and isinstance(left, str):
        check_percent_format(left, right)


def _check_bits(bits: int, what: str) -> None:
    if bits > MAX_INT_BITS:
        raise RenderLimitExceeded(
            f"{what} would make an integer of about {bits:,} bits, more than the {MAX_INT_BITS:,} a template may build"
        )


# %[(key)][flags][width][.precision][length]type
_PERCENT = re.compile(r"%(\([^)]*\))?[#0+\- ]*(\*|\d+)?(?:\.(\*|\d+))?[hlL]?([a-zA-Z%])")


def check_percent_format(fmt: str, args: Any) -> None:
    """Widths and precisions of ``fmt % args`` (``'%0999999999d'``, ``'%*d'``) stay within the limit."""
    positional = list(args) if isinstance(args, tuple) else [args]
    position = 0
    for match in _PERCENT.finditer(fmt):
        key, width, precision, kind = match.groups()
        for number in (width, precision):
            if number == "*":
                value = positional[position] if position < len(positional) else 0
                position += 1
                if _is_int(value):
                    check_size(abs(value), f"the %-format width {value}")
            elif number:
                check_size(int(number), f"the %-format width {number} in {fmt[:40]!r}")
        if kind != "%" and key is None:
            position += 1


_FORMAT_NUMBER = re.compile(r"\d+")


def check_format_spec(spec: str) -> None:
    """Every width and precision in a ``str.format`` spec (``'{:>999999999}'``) stays within the limit."""
    for number in _FORMAT_NUMBER.findall(spec):
        check_size(int(number), f"the format width {number}")


# --- filters and methods ---------------------------------------------------------------------


def _text(value: Any) -> str:
    return value if isinstance(value, str) else str(value)


def _lines(text: str) -> int:
    return text.count("\n") + 2


def _replace_size(s: Any, old: Any, new: Any, count: Any = None) -> int:
    s, old, new = _text(s), _text(old), _text(new)
    occurrences = s.count(old) if old else len(s) + 1
    if _is_int(count) and count >= 0:
        occurrences = min(occurrences, count)
    return len(s) + occurrences * (len(new) - len(old))


def _indent_size(s: Any, width: Any = 4, *args: Any, **kwargs: Any) -> int:
    indent = len(width) if isinstance(width, str) else width if _is_int(width) else 0
    return len(_text(s)) + indent * _lines(_text(s))


def _tojson_size(value: Any, indent: Any = None, *args: Any, **kwargs: Any) -> int:
    if not _is_int(indent) or indent <= 0:
        return 0
    compact = json.dumps(value, default=str)
    depth = deepest = 0
    for char in compact:
        if char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return len(compact) * (1 + indent * max(deepest, 1))


def _wordwrap_size(
    s: Any, width: Any = 79, break_long_words: Any = True, wrapstring: Any = None, *args: Any, **kwargs: Any
) -> int:
    return len(_text(s)) * (1 + len(_text(wrapstring)) if wrapstring is not None else 2)


def _urlize_size(s: Any, *args: Any, target: Any = None, rel: Any = None, **kwargs: Any) -> int:
    extra = sum(len(_text(v)) for v in (target, rel) if v is not None)
    return len(_text(s)) * (20 + extra)


def _pieces(count: Any, what: str) -> None:
    if _is_int(count) and count > MAX_PIECES:
        raise RenderLimitExceeded(f"{what} {count:,} would make more than {MAX_PIECES:,} pieces per cell")


def _batch_check(value: Any, linecount: Any = None, fill_with: Any = None) -> None:
    if fill_with is not None and _is_int(linecount):
        check_size(linecount, f"batch({linecount}) padded with fill values")


#: Filter -> a check of its arguments (raises, or returns a predicted output size).
FILTER_CHECKS: dict[str, Any] = {
    "center": lambda value, width=80, *a, **k: max(len(_text(value)), width if _is_int(width) else 0),
    "indent": _indent_size,
    "format": lambda value, *args, **kwargs: check_percent_format(_text(value), tuple(args) if not kwargs else kwargs),
    "replace": _replace_size,
    "slice": lambda value, slices=1, *a, **k: _pieces(slices, "slice"),
    "batch": _batch_check,
    "tojson": _tojson_size,
    "wordwrap": _wordwrap_size,
    "urlize": _urlize_size,
}


def check_filter(name: str, value: Any, args: tuple, kwargs: dict) -> None:
    tick()
    check = FILTER_CHECKS.get(name)
    if check is not None:
        size = check(value, *args, **kwargs)
        if _is_int(size):
            check_size(size, f"the filter {name}")


def check_joined(items: list, separator: Any, what: str) -> None:
    """``sep.join(items)`` / ``|join`` / ``|sum`` over sequences: the total stays within the limit."""
    size = len(_text(separator)) * max(len(items) - 1, 0) if isinstance(separator, (str, bytes)) else 0
    for item in items:
        size += len(item) if isinstance(item, _SIZED) else len(str(item))
        if size > _budget.limits.max_output_chars:
            break
    check_size(size, what)


def _pad_size(self_obj: Any, width: Any = 0, *args: Any) -> int:
    return max(len(self_obj), width if _is_int(width) else 0)


def _expandtabs_size(self_obj: Any, tabsize: Any = 8) -> int:
    return len(self_obj) + self_obj.count("\t" if isinstance(self_obj, str) else b"\t") * (
        tabsize if _is_int(tabsize) else 8
    )


def _translate_size(self_obj: Any, table: Any = None, *args: Any) -> int:
    longest = (
        max((len(v) for v in table.values() if isinstance(v, _SIZED)), default=1) if isinstance(table, dict) else 1
    )
    return len(self_obj) * max(longest, 1)


_METHOD_CHECKS: dict[str, Any] = {
    "ljust": _pad_size,
    "rjust": _pad_size,
    "center": _pad_size,
    "zfill": _pad_size,
    "expandtabs": _expandtabs_size,
    "replace": lambda self_obj, old, new, count=-1: (
        _replace_size(self_obj, old, new, count) if isinstance(self_obj, str) else 0
    ),
    "translate": _translate_size,
}


def check_call(obj: Any, args: tuple, kwargs: dict) -> None:
    """Methods of strings that can grow their result far beyond their inputs."""
    tick()
    owner = getattr(obj, "__self__", None)
    if not isinstance(owner, (str, bytes)):
        return
    name = getattr(obj, "__name__", "")
    if name in ("format", "format_map") and isinstance(owner, str):
        for _, _, spec, _ in string.Formatter().parse(owner):
            if spec and "{" not in spec:
                check_format_spec(spec)
        return
    if name == "join" and args:
        items = list(args[0]) if not isinstance(args[0], (str, bytes)) else [args[0]]
        check_joined(items, owner, "join")
        return
    check = _METHOD_CHECKS.get(name)
    if check is not None:
        check_size(check(owner, *args, **kwargs), f"the method {name}")


def check_result(value: Any) -> None:
    if isinstance(value, _SIZED):
        check_size(len(value), "the call's result")
