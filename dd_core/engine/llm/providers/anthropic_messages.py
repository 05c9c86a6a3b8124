"""Anthropic's Messages API, dd's side: ``POST {base_url}/v1/messages`` with ``x-api-key`` and
``anthropic-version``.

- The request: ``model``, ``max_tokens`` (required), ``system`` as a top-level field, one user
  message, the sampling parameters and ``extra_body``. A structured or judge column asks through
  a tool whose input schema is the column's schema, the tool forced by ``tool_choice``
  (``structured_output: tool``, the default), through the API's JSON output
  (``output_config.format``, ``json_schema``) or through the prompt alone (``prompt``); the reply
  is validated like any structured reply either way.
- The payload (the cache key's source) also holds the cell's ``seed``: the API has no seed, so it
  is taken out of the body sent (``wire``), and two cells with the same prompt stay two requests.
- The reply: a Message, whole or (``stream``) as its events, read by ``anthropic_replies``; a
  streamed request adds ``"stream": true`` to the body sent, nothing else.
- Errors: ``{"type": "error", "error": {"type": ..., "message": ...}}``. 429 (``retry-after``
  honoured) and 529 ``overloaded_error`` are back-pressure: retried and counted as throttled.
- Rate limits: ``anthropic-ratelimit-{requests,tokens}-{limit,remaining,reset}`` (reset an RFC
  3339 time) are turned into OpenAI's ``x-ratelimit-*`` for the rate limiter, the reset counted
  from the reply's ``Date``.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import orjson

from dd_core.config.llm_columns import LLMColumn
from dd_core.config.models import ModelConfig
from dd_core.engine.llm.cells import output_schema, tool_name
from dd_core.engine.llm.client import CallFailed, ChatDialect, retry_after_s, should_retry
from dd_core.engine.llm.providers.anthropic_replies import MessageStream, parse_message
from dd_core.engine.llm.replies import MalformedReply, parse_json
from dd_core.engine.llm.retry_policy import THROTTLING_STATUS
from dd_core.engine.llm.runtime import Endpoint
from dd_core.engine.llm.wire import serialise

#: The Messages API version dd speaks (the ``anthropic-version`` header).
API_VERSION = "2023-06-01"
#: The payload field holding the cell's seed (not part of the API: removed from what is sent).
SEED = "seed"
#: What a streamed request's body ends with instead of its closing brace.
STREAM_FIELDS = b',"stream":true}'


def api_root(endpoint: Endpoint) -> str:
    """``base_url`` without a trailing ``/v1`` (both spellings are taken)."""
    url = endpoint.base_url.rstrip("/")
    return url[: -len("/v1")] if url.endswith("/v1") else url


def auth_headers(endpoint: Endpoint) -> dict[str, str]:
    return {"anthropic-version": API_VERSION, **({"x-api-key": endpoint.api_key} if endpoint.api_key else {})}


class MessagesTemplate:
    """A column's Messages API requests: the constant fields once, then each row's system and
    user text and each attempt's seed."""

    def __init__(self, model: ModelConfig, column: LLMColumn):
        body: dict[str, Any] = {"model": model.model, "max_tokens": model.max_tokens}
        body.update((k, getattr(model, k)) for k in ("temperature", "top_p") if getattr(model, k) is not None)
        body.update(model.extra_body)
        schema = output_schema(column)
        if schema is not None and model.structured_output == "tool":
            name = tool_name(column.name)
            body["tools"] = [
                {"name": name, "description": f"Record the {column.name} of this row.", "input_schema": schema}
            ]
            body["tool_choice"] = {"type": "tool", "name": name}
        elif schema is not None and model.structured_output == "json_schema":
            body["output_config"] = {"format": {"type": "json_schema", "schema": schema}}
        self._constant = body

    @staticmethod
    def prompt(system: str | None, user: str) -> tuple[str | None, str]:
        return system, user

    def payload(self, prompt: tuple[str | None, str], seed: int) -> bytes:
        system, user = prompt
        body = {**self._constant, "messages": [{"role": "user", "content": user}], SEED: int(seed)}
        if system is not None:
            body["system"] = system
        return serialise(body)


def template(model: ModelConfig, column: LLMColumn) -> MessagesTemplate:
    return MessagesTemplate(model, column)


def wire(payload: bytes) -> bytes:
    """The request body sent for a payload: the payload without dd's seed."""
    body = orjson.loads(payload)
    body.pop(SEED, None)
    return orjson.dumps(body)


def chat_dialect(endpoint: Endpoint) -> ChatDialect:
    return ChatDialect(
        url=api_root(endpoint) + "/v1/messages",
        headers=auth_headers(endpoint),
        wire=wire,
        parse=parse_message,
        failure=failure,
        rate_headers=rate_headers,
        stream_fields=STREAM_FIELDS,
        stream_reply=MessageStream,
    )


def error_text(body: bytes) -> str:
    """``"<type>: <message>"`` from Anthropic's error shape, else the body's start."""
    try:
        error = parse_json(body)["error"]
        return f"{error['type']}: {error['message']}"[:300]
    except (MalformedReply, KeyError, TypeError, IndexError):
        return body[:300].decode("utf-8", "replace")


def failure(status: int, headers: Any, body: bytes, what: str = "") -> CallFailed:
    """A non-200 answer, quoting Anthropic's error type and message (never a header)."""
    return CallFailed(
        f"{what}HTTP {status}: {error_text(body)}",
        code=str(status),
        status=status,
        retryable=should_retry(status, headers),
        retry_after=retry_after_s(headers),
        throttled=status in THROTTLING_STATUS,
    )


def rate_headers(headers: Mapping[str, str]) -> Mapping[str, str] | None:
    """``anthropic-ratelimit-*`` as OpenAI's ``x-ratelimit-*`` (resets in seconds from now)."""
    now = _server_time(headers)
    out: dict[str, str] = {}
    for kind, sources in (("requests", ("requests",)), ("tokens", ("tokens", "input-tokens"))):
        for source in sources:
            prefix = f"anthropic-ratelimit-{source}"
            limit, remaining, reset = (headers.get(f"{prefix}-{part}") for part in ("limit", "remaining", "reset"))
            reset_at = _rfc3339(reset)
            if limit is None or remaining is None or reset_at is None:
                continue
            out[f"x-ratelimit-limit-{kind}"] = limit
            out[f"x-ratelimit-remaining-{kind}"] = remaining
            out[f"x-ratelimit-reset-{kind}"] = f"{max(0.0, reset_at - now):.3f}"
            break
    return out or None


def _rfc3339(text: str | None) -> float | None:
    try:
        return datetime.fromisoformat(text).timestamp() if text else None
    except (ValueError, OverflowError):
        return None


def _server_time(headers: Mapping[str, str]) -> float:
    """The reply's ``Date`` (the server's clock, to the second), else ours."""
    try:
        return email.utils.parsedate_to_datetime(headers["Date"]).timestamp()
    except (KeyError, TypeError, ValueError, IndexError):
        return time.time()
