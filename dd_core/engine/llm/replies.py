"""A chat-completion reply body, checked before it is trusted.

Any body a server can send is either a ``Completion`` or a ``MalformedReply`` for that cell
(retried, then its row dropped): never an exception that ends the run. Bodies are bounded in
size (``MAX_REPLY_BYTES``), JSON nested deeper than Python can parse is refused, and every
field dd reads is checked for its type (``"usage": "n/a"``, ``prompt_tokens: 1e400``, a list
where an object belongs). Known secrets are scrubbed from the content. A reply that calls a
function (``structured_output: tool``) has its arguments as its content.
"""

from __future__ import annotations

import json
import math
from typing import Any, NamedTuple, Protocol

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
    alone by the garbage collector after its first pass (a row group's cache keeps thousands).
    ``cut``: it ended at ``max_tokens`` (OpenAI's ``finish_reason: length``), not where the model
    chose to."""

    content: str
    prompt_tokens: int
    completion_tokens: int
    cut: bool = False


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
    content = _tool_arguments(message)
    if content is None:
        content = message.get("content")
    if not isinstance(content, str):
        raise MalformedReply(f"'choices[0].message.content' is {json_kind(content)}, not a string")
    usage = data.get("usage")
    if usage is None:
        usage = {}
    if not isinstance(usage, dict):
        raise MalformedReply(f"'usage' is {json_kind(usage)}, not an object")
    # A server that writes the API key into a reply must not get it into the data or the cache.
    cut = choices[0].get("finish_reason") == "length"
    return Completion(scrub(content), token_count(usage, "prompt_tokens"), token_count(usage, "completion_tokens"), cut)


class StreamAssembler(Protocol):
    """A reply assembled from its stream, one event's data at a time (a provider's choice:
    ``StreamedCompletion`` for OpenAI's chunks)."""

    #: Content events so far (a token, near enough: what an abandoned reply may have cost).
    seen: int

    def add(self, data: bytes) -> bool:
        """One event's data; True once it was the stream's last. ``MalformedReply`` for an event of
        the wrong shape (or a ``CallFailed`` of the provider's own, such as an error event)."""

    def completion(self, prompt_estimate: int) -> Completion:
        """The reply; ``prompt_estimate`` stands in for prompt tokens the stream did not report."""


class StreamedCompletion:
    """A chat completion assembled from its stream's chunks (``chat.completion.chunk`` objects:
    ``choices[0].delta`` content or function-call arguments, then ``finish_reason``, then the
    ``usage`` that ``stream_options.include_usage`` asks for). ``seen``: the content chunks so
    far (a chunk is a token, near enough: what an abandoned reply may have cost)."""

    def __init__(self) -> None:
        self._content: list[str] = []
        self._arguments: list[str] = []
        self.seen = 0
        self.size = 0
        self.finish_reason: str | None = None
        self.usage: dict | None = None

    def add(self, data: bytes) -> bool:
        """One event's data (True for the last, ``[DONE]``); a chunk of the wrong shape is ``MalformedReply``."""
        if data == b"[DONE]":
            return True
        chunk = parse_json(data)
        if not isinstance(chunk, dict):
            raise MalformedReply(f"a stream chunk is a JSON {json_kind(chunk)}, not an object")
        if "error" in chunk:
            error = chunk["error"]
            message = error.get("message") if isinstance(error, dict) else error
            raise MalformedReply(f"the server ended the stream with an error: {str(message)[:300]}")
        usage = chunk.get("usage")
        if usage is not None and not isinstance(usage, dict):
            raise MalformedReply(f"'usage' is {json_kind(usage)}, not an object")
        if usage is not None:
            self.usage = usage
        choices = chunk.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            return False  # the usage chunk has no choices
        choice = choices[0]
        delta = choice.get("delta")
        if isinstance(delta, dict):
            text = delta.get("content")
            if isinstance(text, str) and text:
                self._content.append(text)
                self.seen += 1
                self.size += len(text)
            calls = delta.get("tool_calls")
            if isinstance(calls, list) and calls and isinstance(calls[0], dict):
                arguments = (calls[0].get("function") or {}).get("arguments")
                if isinstance(arguments, str) and arguments:
                    self._arguments.append(arguments)
                    self.seen += 1
                    self.size += len(arguments)
        if isinstance(choice.get("finish_reason"), str):
            self.finish_reason = choice["finish_reason"]
        if self.size > MAX_REPLY_BYTES:
            raise MalformedReply(f"the streamed reply is more than the {MAX_REPLY_BYTES:,} bytes a reply may have")
        return False

    def completion(self, prompt_estimate: int) -> Completion:
        """The reply; without usage in the stream, prompt tokens are ``prompt_estimate`` and
        completion tokens the chunks seen."""
        if self.finish_reason is None:
            raise MalformedReply("the stream ended before its last chunk (no finish_reason)")
        content = "".join(self._arguments) if self._arguments else "".join(self._content)
        usage = self.usage
        prompt, completion = (
            (token_count(usage, "prompt_tokens"), token_count(usage, "completion_tokens"))
            if usage is not None
            else (prompt_estimate, self.seen)
        )
        return Completion(scrub(content), prompt, completion, self.finish_reason == "length")


def _tool_arguments(message: dict) -> str | None:
    """The arguments of the message's first function call (``structured_output: tool``), if any."""
    calls = message.get("tool_calls")
    if not isinstance(calls, list) or not calls or not isinstance(calls[0], dict):
        return None
    function = calls[0].get("function")
    arguments = function.get("arguments") if isinstance(function, dict) else None
    return arguments if isinstance(arguments, str) else None


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
