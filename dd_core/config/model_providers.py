"""What each provider needs of a model entry, checked when the config loads, naming the field.

- ``openai`` (the default): any OpenAI-compatible chat-completions server at ``base_url``.
- ``azure``: Azure OpenAI. ``base_url`` is the resource endpoint (``https://NAME.openai.azure.com``),
  ``api_version`` its REST API version, ``deployment`` the deployment (default: ``model``); the key
  from ``api_key_env`` (the ``api-key`` header) or a Microsoft Entra ID token from
  ``azure_ad_token_env`` (a bearer token).
- ``anthropic``: Anthropic's Messages API at ``base_url`` (default ``https://api.anthropic.com``);
  ``max_tokens`` is required and ``temperature`` is at most 1, as the API has them.
"""

from __future__ import annotations

import re
from typing import Any, Protocol

from dd_core.config.base import FieldProblem

#: Where a provider's API lives when the model entry names no ``base_url``.
DEFAULT_BASE_URLS = {"anthropic": "https://api.anthropic.com"}
#: The ``structured_output`` modes each provider takes; the first is its default.
STRUCTURED_OUTPUT = {
    "openai": ("json_schema", "json_object", "tool", "prompt"),
    "azure": ("json_schema", "json_object", "tool", "prompt"),
    "anthropic": ("tool", "json_schema", "prompt"),
}
#: Settings only Azure OpenAI has.
AZURE_SETTINGS = ("api_version", "deployment", "azure_ad_token_env")
#: An Azure OpenAI REST API version: a date, optionally a preview.
API_VERSION = re.compile(r"^\d{4}-\d{2}-\d{2}(-preview)?$")
#: Request-body fields dd writes itself (``extra_body`` may not set them).
RESERVED_BODY = {
    "openai": frozenset(
        {"model", "messages", "seed", "response_format", "tools", "tool_choice", "stream", "stream_options"}
    ),
    "azure": frozenset(
        {"model", "messages", "seed", "response_format", "tools", "tool_choice", "stream", "stream_options"}
    ),
    "anthropic": frozenset(
        {"model", "messages", "system", "max_tokens", "stream", "tools", "tool_choice", "output_config"}
    ),
}
#: The one completion window Azure's and Anthropic's batches have.
FIXED_COMPLETION_WINDOW = "24h"


class ModelEntry(Protocol):
    """The fields of a model entry these checks read (``models.ModelConfig``)."""

    provider: str
    api_key_env: str | None
    api_version: str | None
    deployment: str | None
    azure_ad_token_env: str | None
    structured_output: str
    extra_body: dict[str, Any]
    max_tokens: int | None
    temperature: float | None
    batch_completion_window: str


def check_provider(model: ModelEntry) -> None:
    """Raise ``FieldProblem`` for the first setting the model's provider does not accept."""
    provider = model.provider
    if provider != "azure":
        for name in AZURE_SETTINGS:
            if getattr(model, name) is not None:
                raise FieldProblem(name, f"is an Azure OpenAI setting; this model's provider is '{provider}'")
    reserved = sorted(set(model.extra_body) & RESERVED_BODY[provider])
    if reserved:
        raise FieldProblem("extra_body", f"{reserved} are set by dd for provider '{provider}'; remove them")
    modes = STRUCTURED_OUTPUT[provider]
    if model.structured_output not in modes:
        raise FieldProblem(
            "structured_output",
            f"provider '{provider}' takes {' or '.join(repr(m) for m in modes)} (default {modes[0]!r}), "
            f"not {model.structured_output!r}",
        )
    if provider == "azure":
        _check_azure(model)
    elif provider == "anthropic":
        _check_anthropic(model)


def _check_azure(model: ModelEntry) -> None:
    if model.api_version is None:
        raise FieldProblem("api_version", "Azure OpenAI needs its REST API version, e.g. api_version: '2024-10-21'")
    if not API_VERSION.match(model.api_version):
        raise FieldProblem(
            "api_version", f"must look like '2024-10-21' or '2025-04-01-preview', got {model.api_version[:40]!r}"
        )
    if model.api_key_env is not None and model.azure_ad_token_env is not None:
        raise FieldProblem(
            "azure_ad_token_env", "give either api_key_env (an API key) or azure_ad_token_env (an Entra ID token)"
        )
    _check_window(model, "Azure OpenAI")


def _check_anthropic(model: ModelEntry) -> None:
    if model.max_tokens is None:
        raise FieldProblem("max_tokens", "Anthropic's Messages API needs max_tokens (the longest reply), e.g. 1024")
    if model.temperature is not None and model.temperature > 1:
        raise FieldProblem("temperature", f"Anthropic takes a temperature from 0 to 1, got {model.temperature:g}")
    _check_window(model, "Anthropic")


def _check_window(model: ModelEntry, who: str) -> None:
    if model.batch_completion_window != FIXED_COMPLETION_WINDOW:
        raise FieldProblem(
            "batch_completion_window",
            f"{who}'s batches have one completion window, '{FIXED_COMPLETION_WINDOW}'; "
            f"got {model.batch_completion_window!r}",
        )
