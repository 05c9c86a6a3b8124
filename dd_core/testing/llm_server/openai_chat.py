"""OpenAI's chat-completions protocol, as OpenAI and vLLM speak it: ``POST /v1/chat/completions``
and ``GET /v1/models``, keys as ``Authorization: Bearer``, errors as ``{"error": {...}}``.

A request is keyed by :func:`request_key` (the fields that determine the reply); its reply is
:func:`reply_content`: JSON for a ``json_schema`` ``response_format`` (or ``json_object`` with a
``schema`` beside it, as Together and llama.cpp take it), a function call whose arguments follow
the parameters when ``tools`` name a ``tool_choice``, any JSON object for a bare ``json_object``,
else text (see :mod:`dd_core.testing.llm_server.replies`). Usage counts words. A server can refuse
some of these the way servers do (``refused``: llama-cpp-python refuses ``json_schema``).
``stream: true`` gets the same reply as ``chat.completion.chunk`` events: the role, the content a
word at a time (a function call's arguments for a tool), ``finish_reason``, the usage when
``stream_options.include_usage`` asks for it, then ``[DONE]``; the key ignores ``stream``.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from aiohttp import web

from dd_core.testing.llm_server.faults import FaultRule
from dd_core.testing.llm_server.protocol import ChatRequest, RequestProblem
from dd_core.testing.llm_server.rate_limits import Budget, openai_headers
from dd_core.testing.llm_server.replies import invalid_reply, json_object_reply, structured_reply, text_reply
from dd_core.testing.llm_server.schema_faker import SchemaError

# Request fields that determine the reply and the request key.
KEY_FIELDS = (
    "model",
    "messages",
    "temperature",
    "top_p",
    "max_tokens",
    "seed",
    "response_format",
    "tools",
    "tool_choice",
)
#: Ways to ask for structured output that a server can be told to refuse (``OpenAIChat(refused=...)``).
STRUCTURED_WAYS = ("json_schema", "json_object", "tools")

_ERROR_TYPES = {401: ("invalid_request_error", "invalid_api_key"), 429: ("requests", "rate_limit_exceeded")}


def request_key(body: Mapping[str, Any]) -> str:
    """sha256 of the canonical JSON of the request's KEY_FIELDS (absent fields are null)."""
    canonical = json.dumps(
        {name: body.get(name) for name in KEY_FIELDS},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def _text(content: Any) -> str:
    """Text of a message content: a string or a list of OpenAI content parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            part["text"] for part in content if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return ""


def reply_content(body: Mapping[str, Any], key: str) -> str:
    """The assistant content (or a function call's arguments) for a validated request:
    structured, fenced code or plain text."""
    tool = _chosen_tool(body)
    if tool is not None:
        return structured_reply(tool["parameters"], key)
    response_format = body.get("response_format") or {}
    if response_format.get("type") == "json_schema":
        return structured_reply(response_format["json_schema"]["schema"], key)
    if response_format.get("type") == "json_object":
        schema = response_format.get("schema")
        return structured_reply(schema, key) if isinstance(schema, dict) else json_object_reply(key)
    return text_reply([(message["role"], _text(message.get("content"))) for message in body["messages"]], key)


def _chosen_tool(body: Mapping[str, Any]) -> dict[str, Any] | None:
    """The function ``tool_choice`` names among ``tools`` (a validated request), or None."""
    choice = body.get("tool_choice")
    if not isinstance(choice, dict):
        return None
    name = (choice.get("function") or {}).get("name")
    return next((t["function"] for t in body.get("tools") or [] if t["function"]["name"] == name), None)


def _invalid_content(body: Mapping[str, Any]) -> str:
    """Content that fails the requested format (see :func:`invalid_reply`)."""
    tool = _chosen_tool(body)
    response_format = body.get("response_format") or {}
    schema = (
        tool["parameters"]
        if tool
        else (response_format.get("json_schema") or {}).get("schema") or response_format.get("schema") or {}
    )
    return invalid_reply(schema.get("required") or [])


def _request_problem(body: Any) -> str | None:
    """Why a chat request is invalid (answered with 400), or None."""
    if not isinstance(body, dict):
        return "The request body must be a JSON object."
    if not isinstance(body.get("model"), str) or not body["model"]:
        return "'model' is a required string."
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "'messages' must be a non-empty array."
    if not all(isinstance(message, dict) and isinstance(message.get("role"), str) for message in messages):
        return "Each message must be an object with a string 'role'."
    if not isinstance(body.get("stream", False), bool):
        return "'stream' must be a boolean."
    tools = body.get("tools")
    if tools is not None and not (
        isinstance(tools, list)
        and tools
        and all(
            isinstance(t, dict)
            and isinstance(t.get("function"), dict)
            and isinstance(t["function"].get("name"), str)
            and isinstance(t["function"].get("parameters"), dict)
            for t in tools
        )
    ):
        return '\'tools\' must be a non-empty array of {"type": "function", "function": {"name", "parameters"}}.'
    response_format = body.get("response_format")
    if response_format is None:
        return None
    if not isinstance(response_format, dict) or response_format.get("type") not in (
        "text",
        "json_object",
        "json_schema",
    ):
        return "'response_format.type' must be one of 'text', 'json_object', 'json_schema'."
    json_schema = response_format.get("json_schema")
    if response_format["type"] == "json_schema" and not (
        isinstance(json_schema, dict) and isinstance(json_schema.get("schema"), dict)
    ):
        return "'response_format.json_schema.schema' must be an object."
    return None


def reply_usage(body: Mapping[str, Any], content: str) -> tuple[int, int]:
    """The usage the server reports for a reply: (prompt, completion) tokens, counted as words."""
    prompt_words = sum(len(_text(message.get("content")).split()) for message in body["messages"])
    return max(1, prompt_words), max(1, len(content.split()))


def completion_json(body: Mapping[str, Any], content: str) -> dict[str, Any]:
    """A chat completion in OpenAI's shape (the same online and in a batch's output file); for a
    request that names a tool, a call of it with ``content`` as its arguments."""
    prompt_tokens, completion_tokens = reply_usage(body, content)
    message: dict[str, Any] = {"role": "assistant", "content": content}
    finish_reason = "stop"
    tool = _chosen_tool(body)
    if tool is not None:
        call = {
            "id": f"call_{uuid.uuid4().hex[:24]}",
            "type": "function",
            "function": {"name": tool["name"], "arguments": content},
        }
        message, finish_reason = {"role": "assistant", "content": None, "tool_calls": [call]}, "tool_calls"
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body["model"],
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def chunk_events(body: Mapping[str, Any], content: str) -> list[bytes]:
    """A reply as the server-sent events of its stream (see the module docstring)."""
    whole = completion_json(body, content)
    base = {k: whole[k] for k in ("id", "created", "model")} | {"object": "chat.completion.chunk"}
    message = whole["choices"][0]["message"]
    tool = message.get("tool_calls")
    pieces = re.findall(r"\S+\s*|\s+", content) or [""]

    def delta(part: str) -> dict[str, Any]:
        if tool is None:
            return {"content": part}
        call = {"index": 0, "function": {"arguments": part}}
        return {"tool_calls": [call]}

    chunks = [{"index": 0, "delta": {"role": "assistant"}, "finish_reason": None}]
    chunks += [{"index": 0, "delta": delta(part), "finish_reason": None} for part in pieces]
    chunks.append({"index": 0, "delta": {}, "finish_reason": whole["choices"][0]["finish_reason"]})
    events = [{**base, "choices": [choice]} for choice in chunks]
    if (body.get("stream_options") or {}).get("include_usage"):
        events.append({**base, "choices": [], "usage": whole["usage"]})
    return [b"data: " + json.dumps(event).encode() + b"\n\n" for event in events] + [b"data: [DONE]\n\n"]


def error_json(status: int, message: str) -> dict[str, Any]:
    default_type = "server_error" if status >= 500 else "invalid_request_error"
    error_type, code = _ERROR_TYPES.get(status, (default_type, None))
    return {"error": {"message": message, "type": error_type, "param": None, "code": code}}


def error_response(status: int, message: str, headers: Mapping[str, str] | None = None) -> web.Response:
    """An error response in OpenAI's shape."""
    return web.json_response(error_json(status, message), status=status, headers=headers)


@web.middleware
async def error_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    """Render aiohttp's own HTTP errors (404, 405, 413, ...) in OpenAI's error shape."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return error_response(exc.status, exc.reason)


def models_json(models: Iterable[str]) -> dict[str, Any]:
    """The body of ``GET /v1/models``."""
    data = [{"id": name, "object": "model", "created": 0, "owned_by": "dd-test"} for name in models]
    return {"object": "list", "data": data}


class OpenAIChat:
    """The chat-completions protocol (a :class:`~dd_core.testing.llm_server.protocol.ChatProtocol`);
    ``refused``: ways of asking for structured output (``STRUCTURED_WAYS``) answered with 400."""

    def __init__(self, refused: Iterable[str] = ()):
        self.refused = frozenset(refused)
        unknown = self.refused - set(STRUCTURED_WAYS)
        if unknown:
            raise ValueError(f"cannot refuse {sorted(unknown)}; choose from {list(STRUCTURED_WAYS)}")

    def authorized(self, request: web.Request, api_key: str | None) -> bool:
        return api_key is None or request.headers.get("Authorization") == f"Bearer {api_key}"

    def refusal(self, request: web.Request) -> web.Response | None:
        return None

    def read(self, request: web.Request | None, body: Any) -> ChatRequest:
        problem = "We could not parse the JSON body of your request." if body is None else _request_problem(body)
        if problem:
            raise RequestProblem(problem)
        refused = self._refused_way(body)
        if refused:
            raise RequestProblem(refused)
        texts = [_text(message.get("content")) for message in body["messages"]]
        stream = body.get("stream") is True
        return ChatRequest(body=body, key=request_key(body), model=body["model"], texts=texts, stream=stream)

    def _refused_way(self, body: Mapping[str, Any]) -> str | None:
        kind = (body.get("response_format") or {}).get("type")
        if kind in self.refused:
            others = [way for way in STRUCTURED_WAYS if way not in self.refused and way != "tools"]
            return f"response_format type '{kind}' is not supported by this server" + (
                f"; use {' or '.join(others)}" if others else ""
            )
        if body.get("tools") and "tools" in self.refused:
            return "'tools' are not supported by this server."
        return None

    def reply(self, chat: ChatRequest) -> str:
        try:
            return reply_content(chat.body, chat.key)
        except SchemaError as exc:
            raise RequestProblem(f"Unsupported response_format schema: {exc}") from None

    def tokens(self, chat: ChatRequest, content: str) -> int:
        return sum(reply_usage(chat.body, content))

    def completion(self, chat: ChatRequest, content: str, headers: Mapping[str, str] | None = None) -> web.Response:
        return web.json_response(self.completion_body(chat.body, content), headers=headers)

    def completion_body(self, body: Mapping[str, Any], content: str) -> dict[str, Any]:
        """A completion as JSON: the online answer's body, and a batch line's."""
        return completion_json(body, content)

    def stream_events(self, chat: ChatRequest, content: str) -> list[bytes]:
        return chunk_events(chat.body, content)

    def invalid_content(self, chat: ChatRequest) -> str:
        return _invalid_content(chat.body)

    def malformed(self) -> web.Response:
        return web.Response(
            text='{"id": "chatcmpl-truncated", "choices": [{"index": 0, "mess', content_type="application/json"
        )

    def error(self, status: int, message: str, headers: Mapping[str, str] | None = None) -> web.Response:
        return error_response(status, message, headers)

    def rate_headers(self, budgets: Mapping[str, Budget]) -> dict[str, str]:
        return openai_headers(budgets)

    def rate_limited(self, headers: Mapping[str, str], retry_after_s: float) -> web.Response:
        return self.error(429, "Rate limit reached for requests or tokens per minute.", headers)

    def batch_reply(
        self, body: Any, pick_fault: Callable[[str, Sequence[str]], FaultRule | None]
    ) -> tuple[int, dict[str, Any]]:
        """(status, JSON body) for one request line of a batch: the online reply, or the
        fault rule's answer for the kinds that exist in a batch (``status``, ``invalid_structured``)."""
        try:
            chat = self.read(None, body)
            content = self.reply(chat)
        except RequestProblem as exc:
            return 400, error_json(400, str(exc))
        rule = pick_fault(chat.model, chat.texts)
        if rule is not None and rule.kind == "status":
            return rule.status, error_json(rule.status, f"Injected fault: HTTP {rule.status}.")
        if rule is not None and rule.kind == "invalid_structured":
            content = _invalid_content(body)
        return 200, self.completion_body(body, content)
