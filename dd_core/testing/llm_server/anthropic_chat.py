"""Anthropic's Messages API, as Anthropic speaks it: ``POST /v1/messages``.

- The key in ``x-api-key``; an ``anthropic-version`` header is required (400 without one).
- The body: ``model``, ``max_tokens`` (required), ``messages`` of ``user`` and ``assistant`` turns
  (content a string or text blocks), ``system`` as a top-level string or text blocks, the
  sampling parameters, ``tools`` and ``tool_choice``, ``output_config.format`` (JSON output);
  any other field is refused ("Extra inputs are not permitted"), as the API does (so a client
  that sends OpenAI's ``seed`` or a ``system`` role finds out here).
- The reply is a Message: a ``tool_use`` block whose input follows the forced tool's schema, JSON
  text for ``output_config``, else text (see :mod:`~dd_core.testing.llm_server.replies`);
  ``stop_reason``; ``usage`` in words: ``input_tokens`` and ``output_tokens``, and, for a request
  with a top-level ``cache_control``, half its input as ``cache_read_input_tokens``.
- ``stream: true`` gets the same Message as its server-sent events, each ``event: NAME`` then
  ``data: JSON`` with the name again as ``type``: ``message_start`` (no content yet, the input
  usage and one output token), ``content_block_start``, a ``ping``, the block's deltas a word at a
  time (``text_delta``, or a tool's input JSON as ``input_json_delta``), ``content_block_stop``,
  ``message_delta`` (``stop_reason``, the output tokens) and ``message_stop``; the key ignores
  ``stream``.
- Errors as ``{"type": "error", "error": {"type": ..., "message": ...}}`` (429 ``rate_limit_error``
  with ``retry-after``, 529 ``overloaded_error``); every answer under a limit carries
  ``anthropic-ratelimit-{requests,tokens}-{limit,remaining,reset}``, resets in RFC 3339.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import math
import re
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from aiohttp import web

from dd_core.testing.llm_server.faults import FaultRule
from dd_core.testing.llm_server.protocol import ChatRequest, RequestProblem
from dd_core.testing.llm_server.rate_limits import Budget
from dd_core.testing.llm_server.replies import invalid_reply, structured_reply, text_reply
from dd_core.testing.llm_server.schema_faker import SchemaError

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}
#: The Messages API's request fields (its SDK's ``MessageCreateParams``).
FIELDS = frozenset(
    {
        "model", "max_tokens", "messages", "system", "temperature", "top_p", "top_k", "stop_sequences",
        "tools", "tool_choice", "output_config", "metadata", "stream", "thinking", "service_tier",
        "cache_control", "container", "inference_geo",
    }
)  # fmt: skip
#: Request fields that determine the reply and the request key.
KEY_FIELDS = (
    "model", "system", "messages", "max_tokens", "temperature", "top_p", "top_k", "stop_sequences",
    "tools", "tool_choice", "output_config",
)  # fmt: skip


def error_type(status: int) -> str:
    return ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")


def error_json(status: int, message: str) -> dict[str, Any]:
    return {
        "type": "error",
        "error": {"type": error_type(status), "message": message},
        "request_id": f"req_{uuid.uuid4().hex[:24]}",
    }


def error_response(status: int, message: str, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.json_response(error_json(status, message), status=status, headers=headers)


def request_key(body: Mapping[str, Any]) -> str:
    canonical = json.dumps(
        {name: body.get(name) for name in KEY_FIELDS}, sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(b["text"] for b in content if isinstance(b, dict) and isinstance(b.get("text"), str))
    return ""


def request_problem(body: Any) -> str | None:
    """Why a Messages request is invalid (answered with 400), or None."""
    if not isinstance(body, dict):
        return "The request body must be a JSON object."
    extra = sorted(set(body) - FIELDS)
    if extra:
        return f"{extra[0]}: Extra inputs are not permitted"
    if not isinstance(body.get("model"), str) or not body["model"]:
        return "model: Field required"
    max_tokens = body.get("max_tokens")
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        return "max_tokens: Field required (a whole number of at least 1)"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "messages: at least one message is required"
    for message in messages:
        role = message.get("role") if isinstance(message, dict) else None
        if role not in ("user", "assistant"):
            return (
                f"messages: Unexpected role {role!r}. The Messages API accepts only 'user' and 'assistant' roles; "
                "put a system prompt in the top-level 'system' field"
            )
    if not isinstance(body.get("stream", False), bool):
        return "stream: Input should be a valid boolean"
    temperature = body.get("temperature")
    if temperature is not None and not (isinstance(temperature, (int, float)) and 0 <= temperature <= 1):
        return "temperature: Input should be less than or equal to 1"
    tools = body.get("tools")
    if tools is not None and not (
        isinstance(tools, list)
        and all(
            isinstance(t, dict) and isinstance(t.get("name"), str) and isinstance(t.get("input_schema"), dict)
            for t in tools
        )
    ):
        return "tools: each tool needs a 'name' and an 'input_schema' object"
    choice = body.get("tool_choice")
    if choice is not None and (
        not isinstance(choice, dict) or choice.get("type") not in ("auto", "any", "tool", "none")
    ):
        return "tool_choice: type must be one of 'auto', 'any', 'tool', 'none'"
    if (
        isinstance(choice, dict)
        and choice.get("type") == "tool"
        and not any(t["name"] == choice.get("name") for t in tools or [])
    ):
        return f"tool_choice: no tool named {choice.get('name')!r}"
    return None


def _forced_tool(body: Mapping[str, Any]) -> dict[str, Any] | None:
    choice, tools = body.get("tool_choice") or {}, body.get("tools") or []
    if choice.get("type") == "tool":
        return next(t for t in tools if t["name"] == choice["name"])
    if choice.get("type") == "any" and tools:
        return tools[0]
    return None


def _json_schema(body: Mapping[str, Any]) -> dict[str, Any] | None:
    fmt = (body.get("output_config") or {}).get("format") or {}
    return fmt.get("schema") if fmt.get("type") == "json_schema" and isinstance(fmt.get("schema"), dict) else None


def reply_content(body: Mapping[str, Any], key: str) -> str:
    """The reply as text: the forced tool's input or the JSON output as JSON, else a text reply."""
    tool = _forced_tool(body)
    schema = tool["input_schema"] if tool is not None else _json_schema(body)
    if schema is not None:
        return structured_reply(schema, key)
    turns = [("system", _text(body.get("system")))] if body.get("system") else []
    turns += [(m["role"], _text(m.get("content"))) for m in body["messages"]]
    return text_reply(turns, key)


def usage_json(body: Mapping[str, Any], content: str) -> dict[str, Any]:
    words = len(_text(body.get("system")).split()) + sum(len(_text(m.get("content")).split()) for m in body["messages"])
    words = max(1, words)
    cached = words // 2 if body.get("cache_control") else 0
    return {
        "input_tokens": words - cached,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": cached,
        "output_tokens": max(1, len(content.split())),
        "service_tier": "standard",
    }


def message_json(body: Mapping[str, Any], content: str) -> dict[str, Any]:
    """A Message (the same online and in a batch's results)."""
    tool = _forced_tool(body)
    block: dict[str, Any] = {"type": "text", "text": content}
    if tool is not None:
        try:
            block = {
                "type": "tool_use",
                "id": f"toolu_{uuid.uuid4().hex[:24]}",
                "name": tool["name"],
                "input": json.loads(content),
            }
        except ValueError:
            pass  # not JSON (an injected invalid reply): the model answered in text instead
    return {
        "id": f"msg_{uuid.uuid4().hex[:24]}",
        "type": "message",
        "role": "assistant",
        "model": body["model"],
        "content": [block],
        "stop_reason": "tool_use" if block["type"] == "tool_use" else "end_turn",
        "stop_sequence": None,
        "usage": usage_json(body, content),
    }


def sse(name: str, data: Mapping[str, Any]) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()


def message_events(body: Mapping[str, Any], content: str) -> list[bytes]:
    """A Message as the server-sent events of its stream (see the module docstring)."""
    whole = message_json(body, content)
    (block,) = whole["content"]
    usage = whole["usage"]
    start = {**whole, "content": [], "stop_reason": None, "usage": {**usage, "output_tokens": 1}}
    if block["type"] == "tool_use":
        opening, kind, field = {**block, "input": {}}, "input_json_delta", "partial_json"
        text = json.dumps(block["input"])
    else:
        opening, kind, field, text = {"type": "text", "text": ""}, "text_delta", "text", content
    events = [
        sse("message_start", {"type": "message_start", "message": start}),
        sse("content_block_start", {"type": "content_block_start", "index": 0, "content_block": opening}),
        sse("ping", {"type": "ping"}),
    ]
    events += [
        sse("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {"type": kind, field: piece}})
        for piece in re.findall(r"\S+\s*|\s+", text)
    ]
    delta = {"stop_reason": whole["stop_reason"], "stop_sequence": None}
    return events + [
        sse("content_block_stop", {"type": "content_block_stop", "index": 0}),
        sse(
            "message_delta",
            {"type": "message_delta", "delta": delta, "usage": {"output_tokens": usage["output_tokens"]}},
        ),
        sse("message_stop", {"type": "message_stop"}),
    ]


def rfc3339(unix: float) -> str:
    return datetime.datetime.fromtimestamp(unix, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


#: Ways of asking for structured output a server can be told to refuse (``AnthropicMessages(refused=...)``).
MESSAGES_WAYS = ("tools", "output_config")


class AnthropicMessages:
    """The Messages API (a :class:`~dd_core.testing.llm_server.protocol.ChatProtocol`);
    ``refused``: ways of asking for structured output (``MESSAGES_WAYS``) answered with 400,
    as a gateway or an older model does."""

    def __init__(self, refused: Iterable[str] = ()):
        self.refused = frozenset(refused)
        unknown = self.refused - set(MESSAGES_WAYS)
        if unknown:
            raise ValueError(f"cannot refuse {sorted(unknown)}; choose from {list(MESSAGES_WAYS)}")

    def authorized(self, request: web.Request, api_key: str | None) -> bool:
        return api_key is None or request.headers.get("x-api-key") == api_key

    def refusal(self, request: web.Request) -> web.Response | None:
        return version_refusal(request)

    def read(self, request: web.Request | None, body: Any) -> ChatRequest:
        problem = "The request body is not valid JSON." if body is None else request_problem(body)
        if problem:
            raise RequestProblem(problem)
        refused = [way for way in MESSAGES_WAYS if way in self.refused and body.get(way)]
        if refused:
            raise RequestProblem(f"{refused[0]}: Extra inputs are not permitted")
        texts = ([_text(body["system"])] if body.get("system") else []) + [
            _text(m.get("content")) for m in body["messages"]
        ]
        stream = body.get("stream") is True
        return ChatRequest(body=body, key=request_key(body), model=body["model"], texts=texts, stream=stream)

    def reply(self, chat: ChatRequest) -> str:
        try:
            return reply_content(chat.body, chat.key)
        except SchemaError as exc:
            raise RequestProblem(f"tools.0.input_schema: unsupported schema: {exc}") from None

    def tokens(self, chat: ChatRequest, content: str) -> int:
        usage = usage_json(chat.body, content)
        return usage["input_tokens"] + usage["cache_read_input_tokens"] + usage["output_tokens"]

    def completion(self, chat: ChatRequest, content: str, headers: Mapping[str, str] | None = None) -> web.Response:
        return web.json_response(message_json(chat.body, content), headers=headers)

    def stream_events(self, chat: ChatRequest, content: str) -> list[bytes]:
        return message_events(chat.body, content)

    def invalid_content(self, chat: ChatRequest) -> str:
        tool = _forced_tool(chat.body)
        schema = tool["input_schema"] if tool is not None else _json_schema(chat.body) or {}
        return invalid_reply(schema.get("required") or [])

    def malformed(self) -> web.Response:
        return web.Response(
            text='{"id": "msg_truncated", "type": "message", "content": [{"ty', content_type="application/json"
        )

    def error(self, status: int, message: str, headers: Mapping[str, str] | None = None) -> web.Response:
        return error_response(status, message, headers)

    def rate_headers(self, budgets: Mapping[str, Budget]) -> dict[str, str]:
        now = time.time()
        headers: dict[str, str] = {}
        for kind, budget in budgets.items():
            prefix = f"anthropic-ratelimit-{kind}"
            headers[f"{prefix}-limit"] = str(budget.limit)
            headers[f"{prefix}-remaining"] = str(budget.remaining)
            headers[f"{prefix}-reset"] = rfc3339(now + math.ceil(budget.reset_s))
        return headers

    def rate_limited(self, headers: Mapping[str, str], retry_after_s: float) -> web.Response:
        retry = {**headers, "retry-after": str(max(1, math.ceil(retry_after_s)))}
        return self.error(429, "This request would exceed your organization's rate limit.", retry)

    def batch_reply(
        self, body: Any, pick_fault: Callable[[str, Sequence[str]], FaultRule | None]
    ) -> tuple[int, dict[str, Any]]:
        """(status, JSON) for one request of a Message Batch: the Message the online endpoint would
        give, or an error (an invalid request, a ``status`` fault)."""
        try:
            chat = self.read(None, body)
            content = self.reply(chat)
        except RequestProblem as exc:
            return 400, error_json(400, str(exc))
        rule = pick_fault(chat.model, chat.texts)
        if rule is not None and rule.kind == "status":
            return rule.status, error_json(rule.status, f"Injected fault: HTTP {rule.status}.")
        if rule is not None and rule.kind == "invalid_structured":
            content = self.invalid_content(chat)
        return 200, message_json(body, content)


def version_refusal(request: web.Request) -> web.Response | None:
    """A request without ``anthropic-version`` is refused, as the API does."""
    if not request.headers.get("anthropic-version"):
        return error_response(400, "anthropic-version: header is required")
    return None
