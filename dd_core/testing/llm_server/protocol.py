"""The seam between a provider's wire protocol and the provider-independent parts of the server.

A protocol module (``openai_chat``, ``azure_chat``, ``anthropic_chat``) reads its requests into a
:class:`ChatRequest` and renders its replies, errors, rate-limit headers and broken answers;
faults, latency, rate limits and stats work on the :class:`ChatRequest` alone, so every protocol
gets them the same way.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from aiohttp import web

from dd_core.testing.llm_server.rate_limits import Budget


class RequestProblem(ValueError):
    """The request is invalid: answered 400 with this message, in the protocol's error shape."""


@dataclasses.dataclass(frozen=True)
class ChatRequest:
    """A valid chat request as the shared machinery sees it, whatever the provider."""

    body: Mapping[str, Any]  # as sent
    key: str  # picks the reply and the latency; also in the stats
    model: str
    texts: Sequence[str]  # the messages' text, in order: what fault rules match
    stream: bool = False  # the reply is asked for as a stream of events


class ChatProtocol(Protocol):
    """A provider's chat endpoint: how its requests are read and its answers look."""

    def authorized(self, request: web.Request, api_key: str | None) -> bool:
        """Whether the request carries ``api_key`` as this provider sends keys (None: no key needed)."""

    def refusal(self, request: web.Request) -> web.Response | None:
        """The answer to a request whose URL or headers the provider refuses before reading its
        body (a missing API version, an unknown deployment), else None."""

    def read(self, request: web.Request, body: Any) -> ChatRequest:
        """The request in a parsed JSON body (None: not JSON); RequestProblem when it is invalid."""

    def reply(self, chat: ChatRequest) -> str:
        """The reply content; RequestProblem when the request asks what the server cannot make."""

    def tokens(self, chat: ChatRequest, content: str) -> int:
        """Tokens the reply's usage reports in all: what a tokens-per-minute limit counts."""

    def completion(self, chat: ChatRequest, content: str, headers: Mapping[str, str] | None = None) -> web.Response:
        """A successful answer with this content."""

    def stream_events(self, chat: ChatRequest, content: str) -> list[bytes]:
        """A successful answer with this content as the server-sent events of a stream."""

    def invalid_content(self, chat: ChatRequest) -> str:
        """Content that fails the format the request asked for."""

    def malformed(self) -> web.Response:
        """A 200 answer whose body is cut off: not JSON."""

    def error(self, status: int, message: str, headers: Mapping[str, str] | None = None) -> web.Response:
        """An error answer in the provider's shape."""

    def rate_headers(self, budgets: Mapping[str, Budget]) -> dict[str, str]:
        """The rate-limit headers of an answer, as the provider sends them."""

    def rate_limited(self, headers: Mapping[str, str], retry_after_s: float) -> web.Response:
        """The 429 of a request over the limits (``retry_after_s``: when it would fit)."""


async def json_or_none(request: web.Request) -> Any:
    """The request's body parsed as JSON, or None when it is not JSON."""
    try:
        return await request.json()
    except ValueError:
        return None
