"""Anthropic's replies as ``Completion``s: a Message read whole, or assembled from its stream's events.

Both give the same ``Completion`` for the same Message: the text blocks joined, or the first
``tool_use`` block's input as JSON (``json.dumps`` of the parsed input, ``ensure_ascii=False``);
input tokens are ``input_tokens`` plus the cache's ``cache_creation_input_tokens`` and
``cache_read_input_tokens`` when reported, output tokens ``output_tokens``; ``cut`` when
``stop_reason`` is ``max_tokens``. Known secrets are scrubbed from the content.

A stream (``"stream": true``) is server-sent events, each named (``event: content_block_delta``)
and carrying its name again as the data's ``type``: ``message_start`` (the Message without
content, its usage so far), per content block a ``content_block_start``, ``content_block_delta``s
(``text_delta``; ``input_json_delta``, pieces of a tool's input JSON) and a ``content_block_stop``,
then ``message_delta`` (``stop_reason``, cumulative usage) and ``message_stop``; ``ping``s
anywhere. An ``error`` event (``overloaded_error`` under load) ends the stream: a failure, retried
when its type is transient. Event types dd does not know are skipped, as Anthropic asks.
"""

from __future__ import annotations

import json
from typing import Any

from dd_core.engine.llm.client import CallFailed, Completion
from dd_core.engine.llm.replies import MAX_REPLY_BYTES, MalformedReply, json_kind, parse_json, token_count
from dd_core.engine.llm.retry_policy import PERMANENT_LINE_CODES, TRANSIENT_LINE_CODES, line_retryable
from dd_core.redaction import scrub

#: Usage fields that count input tokens.
INPUT_FIELDS = ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
#: Error types that mean "too much at once" (Anthropic's 429 and 529).
THROTTLING_ERRORS = frozenset({"rate_limit_error", "overloaded_error"})


def parse_message(body: bytes) -> Completion:
    if len(body) > MAX_REPLY_BYTES:
        raise MalformedReply(f"the body is {len(body):,} bytes, more than the {MAX_REPLY_BYTES:,} a reply may have")
    return message_completion(parse_json(body))


def message_completion(data: Any) -> Completion:
    """A Message object (online, or inside a batch result) as a ``Completion``."""
    if not isinstance(data, dict):
        raise MalformedReply(f"the message is a JSON {json_kind(data)}, not an object")
    blocks = data.get("content")
    if not isinstance(blocks, list):
        raise MalformedReply(f"'content' is {json_kind(blocks)}, not a list of content blocks")
    texts, tool_input = [], None
    for block in blocks:
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text" and isinstance(block.get("text"), str):
            texts.append(block["text"])
        elif kind == "tool_use" and tool_input is None:
            tool_input = tool_use_input(block.get("input"))
    usage = data.get("usage")
    if not isinstance(usage, dict):
        raise MalformedReply(f"'usage' is {json_kind(usage)}, not an object")
    content = tool_content(tool_input) if tool_input is not None else "".join(texts)
    cut = data.get("stop_reason") == "max_tokens"
    return completion_of(content, usage, cut)


def tool_use_input(value: Any) -> dict:
    if not isinstance(value, dict):
        raise MalformedReply(f"a tool_use block's 'input' is {json_kind(value)}, not an object")
    return value


def tool_content(tool_input: dict) -> str:
    """A tool's input as the cell's content."""
    return json.dumps(tool_input, ensure_ascii=False)


def completion_of(content: str, usage: dict, cut: bool) -> Completion:
    prompt_tokens = sum(token_count(usage, key) for key in INPUT_FIELDS if usage.get(key) is not None)
    # A server that writes the API key into a reply must not get it into the data or the cache.
    return Completion(scrub(content), prompt_tokens, token_count(usage, "output_tokens"), cut)


class MessageStream:
    """A Message assembled from its stream's events (a ``replies.StreamAssembler``; see the module
    docstring). ``seen``: the content deltas so far."""

    def __init__(self) -> None:
        self._texts: list[str] = []
        self._tool: list[str] | None = None  # the first tool_use block's input JSON, in pieces
        self._tool_index: Any = None
        self._tool_start: dict = {}
        self._usage: dict | None = None
        self._stop_reason: str | None = None
        self.seen = 0
        self._size = 0

    def add(self, data: bytes) -> bool:
        event = parse_json(data)
        if not isinstance(event, dict):
            raise MalformedReply(f"a stream event is a JSON {json_kind(event)}, not an object")
        kind = event.get("type")
        if kind == "content_block_delta":
            self._delta(event)
        elif kind == "message_start":
            message = event.get("message")
            usage = message.get("usage") if isinstance(message, dict) else None
            if not isinstance(usage, dict):
                raise MalformedReply(f"message_start's 'message.usage' is {json_kind(usage)}, not an object")
            self._usage = dict(usage)
        elif kind == "content_block_start":
            self._block_start(event)
        elif kind == "message_delta":
            self._message_delta(event)
        elif kind == "message_stop":
            return True
        elif kind == "error":
            raise stream_error(event.get("error"))
        return False

    def _delta(self, event: dict) -> None:
        delta = event.get("delta")
        if not isinstance(delta, dict):
            raise MalformedReply(f"a content_block_delta's 'delta' is {json_kind(delta)}, not an object")
        kind = delta.get("type")
        if kind == "text_delta":
            piece, pieces = delta.get("text"), self._texts
        elif kind == "input_json_delta" and self._tool is not None and event.get("index") == self._tool_index:
            piece, pieces = delta.get("partial_json"), self._tool
        else:
            return  # thinking, signatures, a later tool's input: not the cell's content
        if not isinstance(piece, str):
            raise MalformedReply(f"a {kind} carries {json_kind(piece)}, not a string")
        pieces.append(piece)
        self.seen += 1
        self._size += len(piece)
        if self._size > MAX_REPLY_BYTES:
            raise MalformedReply(f"the streamed reply is more than the {MAX_REPLY_BYTES:,} bytes a reply may have")

    def _block_start(self, event: dict) -> None:
        block = event.get("content_block")
        if not isinstance(block, dict):
            raise MalformedReply(f"a content_block_start's 'content_block' is {json_kind(block)}, not an object")
        if block.get("type") == "text" and isinstance(block.get("text"), str) and block["text"]:
            self._texts.append(block["text"])
        elif block.get("type") == "tool_use" and self._tool is None:
            self._tool, self._tool_index = [], event.get("index")
            self._tool_start = tool_use_input(block.get("input", {}))

    def _message_delta(self, event: dict) -> None:
        delta, usage = event.get("delta"), event.get("usage")
        if not isinstance(delta, dict):
            raise MalformedReply(f"a message_delta's 'delta' is {json_kind(delta)}, not an object")
        if usage is not None and not isinstance(usage, dict):
            raise MalformedReply(f"a message_delta's 'usage' is {json_kind(usage)}, not an object")
        if isinstance(delta.get("stop_reason"), str):
            self._stop_reason = delta["stop_reason"]
        if self._usage is None:
            raise MalformedReply("the stream did not begin with message_start (no usage before message_delta)")
        if usage:  # cumulative counts: the latest stand
            self._usage.update((key, value) for key, value in usage.items() if value is not None)

    def completion(self, prompt_estimate: int) -> Completion:
        if self._stop_reason is None:
            raise MalformedReply("the stream ended before its last event (no stop_reason)")
        if self._usage is None:
            raise MalformedReply("the stream reported no usage (no message_start)")
        cut = self._stop_reason == "max_tokens"
        if self._tool is None:
            return completion_of("".join(self._texts), self._usage, cut)
        text = "".join(self._tool)
        if not text:
            return completion_of(tool_content(self._tool_start), self._usage, cut)
        try:
            tool_input = tool_use_input(parse_json(text))
        except MalformedReply:
            if not cut:
                raise
            return completion_of(text, self._usage, cut)  # its column's parse names it as cut
        return completion_of(tool_content(tool_input), self._usage, cut)


def stream_error(error: Any) -> CallFailed:
    """An ``error`` event: retried when its type is transient (``overloaded_error``, ``api_error``...)."""
    kind = error.get("type") if isinstance(error, dict) else None
    message = error.get("message") if isinstance(error, dict) else error
    kind = kind if isinstance(kind, str) else "error"
    return CallFailed(
        f"the server ended the stream with an error: {kind[:80]}: {str(message)[:300]}",
        code=kind if kind in TRANSIENT_LINE_CODES or kind in PERMANENT_LINE_CODES else "error",
        retryable=line_retryable(kind),
        throttled=kind in THROTTLING_ERRORS,
    )
