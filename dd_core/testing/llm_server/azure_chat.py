"""Azure OpenAI's chat completions, as an Azure OpenAI resource speaks them:
``POST /openai/deployments/{deployment}/chat/completions?api-version=YYYY-MM-DD[-preview]``.

- The key in an ``api-key`` header, or a Microsoft Entra ID token as ``Authorization: Bearer``.
- No or a malformed ``api-version``: 404 ``Resource not found``; a deployment the server does not
  serve (its listed models are its deployments): 404 ``DeploymentNotFound``.
- The body is OpenAI's (its ``model`` may be left out: the deployment is in the URL), the reply
  OpenAI's plus Azure's ``prompt_filter_results`` and ``content_filter_results``.
- Errors as ``{"error": {"code": "<status>", "message": ...}}``; a 429 carries ``retry-after`` (whole
  seconds) and ``retry-after-ms``, and every answer ``x-ratelimit-remaining-requests`` and
  ``-tokens`` only (Azure sends no limit or reset).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

from aiohttp import web

from dd_core.testing.llm_server.openai_chat import OpenAIChat, completion_json
from dd_core.testing.llm_server.protocol import ChatRequest
from dd_core.testing.llm_server.rate_limits import Budget

API_VERSION = re.compile(r"^\d{4}-\d{2}-\d{2}(-preview)?$")
CHAT_PATH = "/openai/deployments/{deployment}/chat/completions"
_FILTERS = {name: {"filtered": False, "severity": "safe"} for name in ("hate", "self_harm", "sexual", "violence")}


def azure_error(
    status: int, message: str, headers: Mapping[str, str] | None = None, code: str | None = None
) -> web.Response:
    """An error in Azure's shape; a ``Retry-After`` also goes out as ``retry-after-ms``."""
    headers = dict(headers or {})
    if "Retry-After" in headers and "retry-after-ms" not in headers:
        headers["retry-after-ms"] = str(int(float(headers["Retry-After"]) * 1000))
    body = {"error": {"code": code or str(status), "message": message}}
    return web.json_response(body, status=status, headers=headers)


def api_version_refusal(request: web.Request) -> web.Response | None:
    """Azure answers a missing or unknown ``api-version`` with a bare 404."""
    if not API_VERSION.match(request.query.get("api-version", "")):
        return azure_error(404, "Resource not found")
    return None


def azure_authorized(request: web.Request, api_key: str | None) -> bool:
    return (
        api_key is None
        or request.headers.get("api-key") == api_key
        or request.headers.get("Authorization") == f"Bearer {api_key}"
    )


class AzureChat(OpenAIChat):
    """Azure's chat completions (a :class:`~dd_core.testing.llm_server.protocol.ChatProtocol`)."""

    def __init__(self, deployments: Iterable[str], refused: Iterable[str] = ()):
        super().__init__(refused)
        self.deployments = frozenset(deployments)

    def authorized(self, request: web.Request, api_key: str | None) -> bool:
        return azure_authorized(request, api_key)

    def refusal(self, request: web.Request) -> web.Response | None:
        refused = api_version_refusal(request)
        if refused is None and request.match_info["deployment"] not in self.deployments:
            return azure_error(
                404,
                "The API deployment for this resource does not exist. If you created the deployment within the last "
                "5 minutes, please wait a moment and try again.",
                code="DeploymentNotFound",
            )
        return refused

    def read(self, request: web.Request | None, body: Any) -> ChatRequest:
        if request is not None and isinstance(body, dict) and "model" not in body:
            body = {**body, "model": request.match_info["deployment"]}
        return super().read(request, body)

    def completion_body(self, body: Mapping[str, Any], content: str) -> dict[str, Any]:
        return azure_completion_json(body, content)

    def error(self, status: int, message: str, headers: Mapping[str, str] | None = None) -> web.Response:
        return azure_error(status, message, headers)

    def rate_headers(self, budgets: Mapping[str, Budget]) -> dict[str, str]:
        return {f"x-ratelimit-remaining-{kind}": str(budget.remaining) for kind, budget in budgets.items()}

    def rate_limited(self, headers: Mapping[str, str], retry_after_s: float) -> web.Response:
        seconds = max(1, math.ceil(retry_after_s))
        return azure_error(
            429,
            "Requests to the ChatCompletions_Create Operation under Azure OpenAI API have exceeded the rate limit of "
            f"your current pricing tier. Please retry after {seconds} seconds.",
            {**headers, "retry-after": str(seconds), "retry-after-ms": str(max(1, math.ceil(retry_after_s * 1000)))},
        )


def azure_completion_json(body: Mapping[str, Any], content: str) -> dict[str, Any]:
    """OpenAI's completion with Azure's content-filter annotations."""
    reply = completion_json(body, content)
    reply["prompt_filter_results"] = [{"prompt_index": 0, "content_filter_results": _FILTERS}]
    reply["choices"][0]["content_filter_results"] = _FILTERS
    return reply
