"""Text from configs, datasets and servers, made safe to print: shown, never acted on.

A terminal acts on control characters (an escape sequence recolours or clears the screen, a
carriage return overwrites the line), so before anything reaches one: the characters rich drops
(bell, backspace, vertical tab, form feed, carriage return) are dropped in a pipe too, and every
other control character except newline and tab is shown as a ``\\xNN`` escape. Markup-like text
(``[bold]``) is never interpreted: callers print it as plain text.
"""

from __future__ import annotations

_DROPPED = (7, 8, 11, 12, 13)
_CONTROLS = [*range(0x00, 0x20), 0x7F, *range(0x80, 0xA0)]
_LITERAL = {c: None if c in _DROPPED else f"\\x{c:02x}" for c in _CONTROLS if c not in (9, 10)}


def literal(text: str) -> str:
    return text.translate(_LITERAL)
