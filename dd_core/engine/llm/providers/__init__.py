"""How dd speaks to each provider: the engine asks the model's ``Provider`` and knows no protocol.

A provider gives three things:

- ``template(model, column)``: the ``RequestTemplate`` of an LLM column, which turns a row's
  prompt and a cell's seed into the payload, the canonical bytes of the request. The payload is
  also the response cache's key (its sha256) and the batch line's ``custom_id`` source, so a
  request asked online and through a batch is one cache entry;
- ``chat_dialect(endpoint)``: how its online endpoint is spoken (``client.ChatDialect``);
- ``batch_api(session, endpoint)``: its batch API (``batch_api.BatchAPI``).

One module (or two) per provider holds everything specific to it: URLs, headers, bodies, replies,
errors, rate-limit headers and batch lifecycles.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp

from dd_core.config.llm_columns import LLMColumn
from dd_core.config.models import ModelConfig
from dd_core.engine.llm.batch_api import BatchAPI
from dd_core.engine.llm.client import ChatDialect
from dd_core.engine.llm.providers import anthropic_batches, anthropic_messages, azure, openai_compatible
from dd_core.engine.llm.runtime import Endpoint


class RequestTemplate(Protocol):
    """One LLM column's requests, with everything constant about them prepared once."""

    def prompt(self, system: str | None, user: str) -> Any:
        """A row's messages, encoded once for all its attempts."""

    def payload(self, prompt: Any, seed: int) -> bytes:
        """The request of one attempt: canonical JSON bytes (sorted keys, compact, UTF-8)."""


@dataclass(frozen=True)
class Provider:
    template: Callable[[ModelConfig, LLMColumn], RequestTemplate]
    chat_dialect: Callable[[Endpoint], ChatDialect]
    batch_api: Callable[[aiohttp.ClientSession, Endpoint], BatchAPI]


PROVIDERS = {
    "openai": Provider(openai_compatible.template, openai_compatible.chat_dialect, openai_compatible.batch_api),
    "azure": Provider(azure.template, azure.chat_dialect, azure.batch_api),
    "anthropic": Provider(anthropic_messages.template, anthropic_messages.chat_dialect, anthropic_batches.batch_api),
}


def provider_for(model: ModelConfig) -> Provider:
    return PROVIDERS[model.provider]
