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

from typing import Any, Protocol

import aiohttp

from dd_core.config.llm_columns import LLMColumn
from dd_core.config.models import ModelConfig
from dd_core.engine.llm.batch_api import BatchAPI
from dd_core.engine.llm.client import ChatDialect
from dd_core.engine.llm.providers import openai_compatible
from dd_core.engine.llm.runtime import Endpoint


class RequestTemplate(Protocol):
    """One LLM column's requests, with everything constant about them prepared once."""

    def prompt(self, system: str | None, user: str) -> Any:
        """A row's messages, encoded once for all its attempts."""

    def payload(self, prompt: Any, seed: int) -> bytes:
        """The request of one attempt: canonical JSON bytes (sorted keys, compact, UTF-8)."""


class Provider(Protocol):
    def template(self, model: ModelConfig, column: LLMColumn) -> RequestTemplate: ...

    def chat_dialect(self, endpoint: Endpoint) -> ChatDialect: ...

    def batch_api(self, session: aiohttp.ClientSession, endpoint: Endpoint) -> BatchAPI: ...


PROVIDERS: dict[str, Provider] = {"openai": openai_compatible}


def provider_for(model: ModelConfig) -> Provider:
    return PROVIDERS[model.provider]
