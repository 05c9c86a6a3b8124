"""Model endpoints for LLM columns (any OpenAI-compatible chat-completions server).

The key itself never enters a config: ``api_key_env`` names the environment variable that
holds it. Endpoint, key, concurrency, timeouts and retries do not change what a model
writes, so the fingerprint leaves them out.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from pydantic import Field, field_validator

from dd_core.config.base import ConfigModel

ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class ModelConfig(ConfigModel):
    alias: str
    model: str
    base_url: str | None = None
    api_key_env: str | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    max_tokens: int | None = Field(default=None, ge=1)
    #: Any further request-body fields (e.g. ``{"repetition_penalty": 1.1}``).
    extra_body: dict[str, Any] = Field(default_factory=dict)
    max_parallel_requests: int = Field(default=4, ge=1, le=1024)
    #: Follow the server below max_parallel_requests: its queue depth (vLLM's /metrics) or,
    #: without metrics, the latency of recent calls. False keeps max_parallel_requests in flight
    #: (429s still halve it).
    adaptive_concurrency: bool = True
    timeout_s: float = Field(default=60.0, gt=0, le=86_400)
    max_retries: int = Field(default=5, ge=0, le=50)
    #: The longest single wait before a retry; a longer Retry-After is cut to this.
    max_retry_wait_s: float = Field(default=60.0, gt=0, le=3600)
    #: Seconds one cell may spend waiting between retries in total; once spent, the cell fails.
    retry_wait_budget_s: float = Field(default=300.0, ge=0, le=86_400)
    description: str | None = None

    fingerprint_exclude = frozenset(
        {"description", "alias", "base_url", "api_key_env", "max_parallel_requests", "adaptive_concurrency", "timeout_s",
         "max_retries", "max_retry_wait_s", "retry_wait_budget_s"}
    )

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None:
            check_base_url(value)
        return value

    @field_validator("api_key_env")
    @classmethod
    def _env_name(cls, value: str | None) -> str | None:
        if value is not None and not ENV_NAME.match(value):
            raise ValueError(
                "must be the NAME of an environment variable holding the key (e.g. OPENAI_API_KEY), "
                "never the key itself"
            )
        return value

    @field_validator("extra_body")
    @classmethod
    def _extra(cls, body: dict[str, Any]) -> dict[str, Any]:
        reserved = sorted(set(body) & {"model", "messages", "seed", "response_format", "stream"})
        if reserved:
            raise ValueError(f"{reserved} are set by dd; remove them from extra_body")
        return body

    def sampling_params(self) -> dict[str, Any]:
        """Request-body fields besides model, messages, seed and response_format."""
        params = {k: getattr(self, k) for k in ("temperature", "top_p", "max_tokens") if getattr(self, k) is not None}
        return {**params, **self.extra_body}


def check_base_url(url: str) -> None:
    """An endpoint is ``http(s)://host[:port][/path]``; anything else would fail only after retries."""
    parts = urlsplit(url) if url.isprintable() else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname or any(c.isspace() for c in url):
        raise ValueError(f"base_url {url[:100]!r} is not an http:// or https:// URL with a host (e.g. http://127.0.0.1:8000/v1)")
    try:
        parts.port
    except ValueError as exc:
        raise ValueError(f"base_url {url[:100]!r} has an invalid port") from exc
