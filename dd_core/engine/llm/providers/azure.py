"""Azure OpenAI: OpenAI's chat completions and Batch API under Azure's URLs, headers and limits.

- Online: ``POST {resource}/openai/deployments/{deployment}/chat/completions?api-version=V`` with
  the ``api-key`` header (or ``Authorization: Bearer`` with a Microsoft Entra ID token). The body
  is OpenAI's with ``model`` set to the deployment: Azure routes by the URL online, and a batch
  line names its deployment there, so a request is the same bytes online and in a batch (one
  response cache entry either way).
- Errors: ``{"error": {"code": "429", "message": ...}}``; a 429 carries ``retry-after`` and
  ``retry-after-ms`` (``client.http_failure`` reads both). A reply whose content the content
  filter withheld fails its cell without a retry.
- Replies are read whole (no ``stream_fields``): older API versions and models refuse
  ``stream_options`` (a stream's usage) with a 400, and a streamed reply's content may arrive
  before the filter's verdict (``finish_reason: content_filter``) ends it.
- Rate limits: Azure sends ``x-ratelimit-remaining-requests`` and ``-tokens`` without a limit or
  a reset. ``AzureRateHeaders`` completes them for the rate limiter: the limit is the most ever
  seen remaining (plus the request just counted), regained evenly over Azure's one-minute window.
- Batches: ``{resource}/openai/files`` and ``/openai/batches`` with ``api-version``, request lines
  and the batch's endpoint ``/chat/completions``; an upload is ``pending`` until processed; a
  batch may first say ``Validating``, with null counts; 100,000 requests and 200 MB per file.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import aiohttp

from dd_core.config.llm_columns import LLMColumn
from dd_core.config.models import ModelConfig
from dd_core.engine.llm.batch_client import BatchClient
from dd_core.engine.llm.client import CallFailed, ChatDialect, Completion
from dd_core.engine.llm.providers.openai_compatible import ChatTemplate
from dd_core.engine.llm.replies import MalformedReply, parse_completion, parse_json
from dd_core.engine.llm.runtime import Endpoint

#: Azure regains per-minute capacity over this window.
WINDOW_S = 60.0
#: Seconds between looks at an uploaded file that Azure is still processing (at most the model's
#: batch_poll_interval_s), and for how long.
FILE_POLL_S = 2.0
FILE_WAIT_S = 1800.0


def resource_url(endpoint: Endpoint) -> str:
    """The resource endpoint, e.g. ``https://NAME.openai.azure.com`` (a trailing ``/openai`` is dropped)."""
    url = endpoint.base_url.rstrip("/")
    return url[: -len("/openai")] if url.endswith("/openai") else url


def deployment(model: ModelConfig) -> str:
    return model.deployment or model.model


def auth_headers(endpoint: Endpoint) -> dict[str, str]:
    if endpoint.api_key is None:
        return {}
    return {"Authorization": f"Bearer {endpoint.api_key}"} if endpoint.bearer else {"api-key": endpoint.api_key}


def template(model: ModelConfig, column: LLMColumn) -> ChatTemplate:
    return ChatTemplate(model, column, body_model=deployment(model))


def chat_dialect(endpoint: Endpoint) -> ChatDialect:
    model = endpoint.model
    url = (
        f"{resource_url(endpoint)}/openai/deployments/{quote(deployment(model), safe='')}/chat/completions"
        f"?api-version={quote(model.api_version or '', safe='')}"
    )
    return ChatDialect(url=url, headers=auth_headers(endpoint), parse=parse_reply, rate_headers=AzureRateHeaders())


def parse_reply(body: bytes) -> Completion:
    """OpenAI's completion; a reply the content filter withheld is a failure not worth retrying."""
    try:
        return parse_completion(body)
    except MalformedReply:
        choice = _first_choice(body)
        if choice.get("finish_reason") == "content_filter":
            raise CallFailed(
                "Azure's content filter withheld the reply (finish_reason content_filter)",
                code="content_filter",
                retryable=False,
            ) from None
        raise


def _first_choice(body: bytes) -> dict:
    try:
        choices = parse_json(body).get("choices")
        return choices[0] if isinstance(choices[0], dict) else {}
    except (MalformedReply, AttributeError, TypeError, IndexError, KeyError):
        return {}


class AzureRateHeaders:
    """Azure's ``x-ratelimit-remaining-*`` in OpenAI's full vocabulary (see the module docstring);
    headers that already carry a limit and a reset pass as they are."""

    def __init__(self) -> None:
        self._limits: dict[str, float] = {}

    def __call__(self, headers: Mapping[str, str]) -> Mapping[str, str] | None:
        out: dict[str, str] = {}
        for kind in ("requests", "tokens"):
            names = [f"x-ratelimit-{part}-{kind}" for part in ("limit", "remaining", "reset")]
            if all(name in headers for name in names):
                out.update((name, headers[name]) for name in names)
                continue
            try:
                remaining = float(headers.get(names[1], "nan"))
            except ValueError:
                continue
            if not math.isfinite(remaining) or remaining < 0:  # Azure sends -1 when it has no figure
                continue
            limit = self._limits[kind] = max(self._limits.get(kind, 0.0), remaining + 1)
            out[names[0]] = f"{limit:g}"
            out[names[1]] = f"{remaining:g}"
            out[names[2]] = f"{(limit - remaining) / limit * WINDOW_S:.3f}"
        return out or None


class AzureBatchClient(BatchClient):
    """Azure OpenAI's Files and Batch APIs of one resource."""

    max_requests = 100_000
    max_bytes = 190 * 2**20
    endpoint = "/chat/completions"

    async def _ready(self, file_id: str, upload: Any) -> None:
        """Wait until Azure has processed the uploaded file (its upload reply may say ``pending``)."""
        info = upload
        poll_s = min(FILE_POLL_S, self._model.batch_poll_interval_s)
        for _ in range(int(FILE_WAIT_S / poll_s)):
            status = info.get("status") if isinstance(info, dict) else None
            if status in (None, "processed"):
                return
            if status in ("error", "deleted"):
                details = info.get("status_details") or "no details given"
                raise CallFailed(
                    f"Azure could not process the batch input file {file_id}: {str(details)[:300]}",
                    code="file_error",
                    retryable=False,
                )
            await self._sleep(poll_s)
            info = await self._retrying(lambda: self._json("GET", f"/files/{file_id}"), f"read file {file_id}")
        raise CallFailed(
            f"the batch input file {file_id} was not processed after {FILE_WAIT_S:g} s",
            code="file_timeout",
            retryable=False,
        )


def batch_api(session: aiohttp.ClientSession, endpoint: Endpoint) -> AzureBatchClient:
    return AzureBatchClient(
        session,
        resource_url(endpoint) + "/openai",
        auth_headers(endpoint),
        timeouts=endpoint.timeouts,
        model=endpoint.model,
        query={"api-version": endpoint.model.api_version or ""},
    )
