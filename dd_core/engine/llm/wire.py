"""The bytes dd sends and keeps: request bodies in canonical JSON, and response-cache lines.

A request body's bytes are also its cache key's source (sha256), so they must never change
between versions for the same request: ``BodyTemplate`` and ``encode_chat`` produce exactly
what ``serialise`` (json.dumps, sorted keys, compact, UTF-8) produces, only faster (json.dumps
builds a new encoder on every call, ~3 us; these encode each string once with the standard
library's own C string encoder).
"""

from __future__ import annotations

import json
import json.encoder
from typing import Any

_ENCODE = json.JSONEncoder(sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode
#: How json.dumps(..., ensure_ascii=False) writes a string (the C function, when available).
encode_string = json.encoder.encode_basestring


def serialise(body: dict[str, Any]) -> bytes:
    """The request body in canonical form: sent as is, and hashed as the cache key (the body
    holds everything that shapes the reply, and no secret or timeout)."""
    return _ENCODE(body).encode()


class BodyTemplate:
    """``serialise({**constant, "messages": ..., "seed": ...})``, byte for byte, with the
    constant part (model, sampling parameters, response format) encoded once, not per call."""

    def __init__(self, constant: dict[str, Any]):
        pieces: list[str] = []
        text = "{"
        for i, key in enumerate(sorted([*constant, "messages", "seed"])):  # "messages" < "seed"
            text += ("," if i else "") + _ENCODE(key) + ":"
            if key in ("messages", "seed"):
                pieces.append(text)
                text = ""
            else:
                text += _ENCODE(constant[key])
        self._before_messages, self._before_seed = pieces
        self._end = text + "}"

    def payload(self, messages: str, seed: int) -> bytes:
        """``messages``: the messages already encoded (``encode_chat``)."""
        return f"{self._before_messages}{messages}{self._before_seed}{int(seed)}{self._end}".encode()


def encode_chat(system: str | None, user: str) -> str:
    """``_ENCODE(messages)`` for what every LLM column sends, ([a system message,] one user
    message), written out: no JSON encoder, no message dicts per call."""
    if system is None:
        return f'[{{"content":{encode_string(user)},"role":"user"}}]'
    return f'[{{"content":{encode_string(system)},"role":"system"}},{{"content":{encode_string(user)},"role":"user"}}]'


def cache_line(
    key: str, content: str, prompt_tokens: int, completion_tokens: int, paid: str = "", cut: bool = False
) -> str:
    """``json.dumps({"key", "content", "prompt_tokens", "completion_tokens", ...}) + "\\n"``, written
    out; ``paid`` is the rest of the object (who paid for the call, see ``cache.paid_fields``);
    a reply cut at max_tokens says so (``"cut": true``: only then, so other lines stay as they were)."""
    return (
        f'{{"key": "{key}", "content": {encode_string(content)}, '
        f'"prompt_tokens": {int(prompt_tokens)}, "completion_tokens": {int(completion_tokens)}{paid}'
        f"{_CUT if cut else ''}}}\n"
    )


_CUT = ', "cut": true'


def abandoned_line(prompt_tokens: int, completion_tokens: int, paid: str) -> str:
    """The cache log's record of a request abandoned after it reached the server (no key: no reply)."""
    return f'{{"abandoned": true, "prompt_tokens": {int(prompt_tokens)}, "completion_tokens": {int(completion_tokens)}{paid}}}\n'
