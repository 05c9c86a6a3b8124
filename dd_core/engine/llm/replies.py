"""A chat-completion reply body, checked before it is trusted.

Any body a server can send is either a ``Completion`` or a ``MalformedReply`` for that cell
(retried, then its row dropped): never an exception that ends the run. Bodies are bounded in
size (``MAX_REPLY_BYTES``), JSON nested deeper than Python can parse is refused, and every
field dd reads is checked for its type (``"usage": "n/a"``, ``prompt_tokens: 1e400``, a list
where an object belongs). Known secrets are scrubbed from the content.
"""

from __future__ import annotations

import json
import math
from typing import Any, NamedTuple

import orjson

from dd_core.redaction import scrub

#: Bytes of one reply body; a completion is text of at most a few hundred kilobytes.
MAX_REPLY_BYTES = 16 * 2**20
#: Token counts above this are not counts.
MAX_TOKENS = 10**12
#: 19 digits in a row (digits made zeros first: a regular expression takes ten times as long).
_ZEROS, _DIGITS_AS_ZEROS = b"0" * 19, bytes.maketrans(b"123456789", b"000000000")


class Completion(NamedTuple):
    """A checked reply. A tuple of text and numbers: made in half a dataclass's time, and left
    alone by the garbage collector after its first pass (a row group's cache keeps thousands)."""

    content: str
    prompt_tokens: int
    completion_tokens: int


class MalformedReply(ValueError):
    """A 200 reply whose body is not a usable chat completion."""


def parse_json(body: bytes | str) -> Any:
    """``json.loads`` that turns every failure (not JSON, not UTF-8, nested too deeply) into
    ``MalformedReply``.

    orjson reads a reply in a quarter of json's time (~1 us of ~4, on every call). What it
    refuses (NaN, 1,024 levels, lone surrogates, UTF-16) or reads otherwise (integers past 64
    bits become floats: a body with 19 digits in a row) goes to json, so every value, and every
    reply accepted or refused, is json's."""
    if type(body) is bytes and _ZEROS not in body.translate(_DIGITS_AS_ZEROS):
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            pass
    try:
        return json.loads(body)
    except RecursionError as exc:
        raise MalformedReply("the JSON is nested too deeply to read") from exc
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        raise MalformedReply(f"not JSON ({str(exc)[:80]})") from exc


def parse_completion(body: bytes) -> Completion:
    if len(body) > MAX_REPLY_BYTES:
        raise MalformedReply(
            f"the body is {len(body):,} bytes, more than the {MAX_REPLY_BYTES:,} bytes a reply may have"
        )
    data = parse_json(body)
    if not isinstance(data, dict):
        raise MalformedReply(f"the body is a JSON {json_kind(data)}, not an object")
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices:
        raise MalformedReply(f"'choices' is {json_kind(choices)}, not a non-empty list")
    message = choices[0].get("message") if isinstance(choices[0], dict) else None
    if not isinstance(message, dict):
        raise MalformedReply(f"'choices[0].message' is {json_kind(message)}, not an object")
    content = message.get("content")
    if not isinstance(content, str):
        raise MalformedReply(f"'choices[0].message.content' is {json_kind(content)}, not a string")
    usage = data.get("usage")
    if usage is None:
        usage = {}
    if not isinstance(usage, dict):
        raise MalformedReply(f"'usage' is {json_kind(usage)}, not an object")
    # A server that writes the API key into a reply must not get it into the data or the cache.
    return Completion(scrub(content), token_count(usage, "prompt_tokens"), token_count(usage, "completion_tokens"))


def token_count(usage: dict, key: str) -> int:
    """``usage[key]``: a whole number of tokens, 0 when absent; ``MalformedReply`` when it is not a count."""
    value = usage.get(key)
    if type(value) is int and 0 <= value <= MAX_TOKENS:  # the usual case, first
        return value
    if value is None:
        return 0
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_TOKENS:
        raise MalformedReply(f"'usage.{key}' is {str(value)[:40]!r}, not a token count")
    return value


def json_kind(value: Any) -> str:
    """What a JSON value is, in words for a message ("object", "list", "null"...)."""
    if value is None:
        return "null"
    return {dict: "object", list: "list", str: "string", bool: "boolean", int: "number", float: "number"}.get(
        type(value), type(value).__name__
    )
