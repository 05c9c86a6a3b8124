"""Model endpoints for LLM columns: any OpenAI-compatible server, Azure OpenAI or Anthropic
(``provider``; what each provider needs is in ``model_providers``).

The key itself never enters a config: ``api_key_env`` names the environment variable that
holds it. The provider, the model and its inference parameters change what a model writes;
endpoint, key, API version, deployment, concurrency, rate limits, timeouts, retries, batch mode
and prices do not, so the fingerprint leaves them out (a batch reply is the reply the same
request gets online).
"""

from __future__ import annotations

import re
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from dd_core.config.base import ConfigModel, FieldProblem
from dd_core.config.model_providers import DEFAULT_BASE_URLS, STRUCTURED_OUTPUT, check_provider

#: ``stream: auto`` streams a model whose replies may be this long (``max_tokens``): at 20 tokens/s
#: a slot writes it in about a minute, long enough to want its silence told from its slowness.
LONG_REPLY_TOKENS = 1000
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
#: A Batch API completion window: a whole number of hours or days, e.g. "24h" (OpenAI's only value).
COMPLETION_WINDOW = re.compile(r"^[1-9][0-9]{0,3}[hd]$")
#: USD per million tokens above this is surely a typo (the dearest models cost well under 1,000).
MAX_PRICE_PER_MTOK = 1_000_000.0
#: Fields added after datasets were made with dd: left out of the fingerprint at these values, so
#: those datasets keep their fingerprint.
FINGERPRINT_DEFAULTS = {"provider": "openai", "structured_output": "json_schema"}


class PriceConfig(ConfigModel):
    """What the provider charges, in USD per million tokens (cost is reported only from these)."""

    input_per_mtok: float = Field(ge=0, le=MAX_PRICE_PER_MTOK, allow_inf_nan=False)
    output_per_mtok: float = Field(ge=0, le=MAX_PRICE_PER_MTOK, allow_inf_nan=False)
    #: The share taken off both prices for requests answered through the Batch API (0.5: half price).
    batch_discount: float = Field(default=0.5, ge=0, le=1, allow_inf_nan=False)


class ModelConfig(ConfigModel):
    alias: str
    #: The API the model is reached through: ``openai`` (any OpenAI-compatible server), ``azure``
    #: (Azure OpenAI) or ``anthropic`` (Anthropic's Messages API).
    provider: Literal["openai", "azure", "anthropic"] = "openai"
    model: str
    base_url: str | None = None
    api_key_env: str | None = None
    #: Azure OpenAI: the REST API version sent as ``api-version`` (e.g. "2024-10-21").
    api_version: str | None = None
    #: Azure OpenAI: the deployment that serves the model (default: ``model``).
    deployment: str | None = None
    #: Azure OpenAI with Microsoft Entra ID: the variable holding a bearer token (instead of a key).
    azure_ad_token_env: str | None = None
    #: How structured and judge columns ask this model for JSON: ``json_schema`` (the schema as
    #: ``response_format``: OpenAI, vLLM, SGLang, llama.cpp; the default), ``json_object`` (JSON mode
    #: with the schema beside it, and in the prompt), ``tool`` (a function call whose parameters are
    #: the schema; the default for Anthropic), ``prompt`` (the schema in the prompt only, for servers
    #: that constrain nothing); what each provider takes is in ``model_providers.STRUCTURED_OUTPUT``.
    structured_output: Literal["json_schema", "json_object", "tool", "prompt"] = "json_schema"
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
    #: Seconds to open a connection: past it the server is down or unreachable (nothing was sent).
    connect_timeout_s: float = Field(default=10.0, gt=0, le=3600)
    #: Seconds for the reply to begin: streamed, its first chunk (the wait in the server's queue and
    #: the prompt); not streamed, the whole reply. See ``dd_core.engine.llm.timeouts``.
    timeout_s: float = Field(default=600.0, gt=0, le=86_400)
    #: Streamed replies: the longest silence between two chunks.
    idle_timeout_s: float = Field(default=120.0, gt=0, le=86_400)
    #: Ask for replies as a stream (``stream: true``, usage in the last chunk): a long reply is
    #: watched chunk by chunk instead of waited for whole. ``auto`` streams when a reply may be long
    #: (``max_tokens`` of at least ``LONG_REPLY_TOKENS``); short replies come whole, which costs less
    #: CPU per call. Batch-mode requests are never streamed.
    stream: bool | Literal["auto"] = "auto"
    max_retries: int = Field(default=5, ge=0, le=50)
    #: The longest single wait before a retry; a longer Retry-After is cut to this.
    max_retry_wait_s: float = Field(default=60.0, gt=0, le=3600)
    #: Seconds one cell may spend waiting between retries in total; once spent, the cell fails.
    retry_wait_budget_s: float = Field(default=300.0, ge=0, le=86_400)
    #: Requests (and tokens, counted from ``max_tokens`` plus the prompt, corrected by the reply's
    #: usage) are paced evenly (a burst of 5%, then the limit's rate) and never exceed these in
    #: any 60 s window.
    max_requests_per_minute: int | None = Field(default=None, ge=1, le=100_000_000)
    max_tokens_per_minute: int | None = Field(default=None, ge=1, le=100_000_000_000)
    #: Send this model's requests through the provider's Batch API (``/files`` and ``/batches``).
    batch: bool = False
    batch_poll_interval_s: float = Field(default=30.0, gt=0, le=86_400, allow_inf_nan=False)
    batch_completion_window: str = "24h"
    price: PriceConfig | None = None
    description: str | None = None

    fingerprint_exclude = frozenset(
        {
            "description", "alias", "base_url", "api_key_env", "api_version", "deployment", "azure_ad_token_env",
            "max_parallel_requests", "adaptive_concurrency", "connect_timeout_s", "timeout_s", "idle_timeout_s", "stream",
            "max_retries", "max_retry_wait_s", "retry_wait_budget_s",
            "max_requests_per_minute", "max_tokens_per_minute",
            "batch", "batch_poll_interval_s", "batch_completion_window", "price",
        }
    )  # fmt: skip

    def fingerprint_view(self) -> dict[str, Any]:
        view = super().fingerprint_view()
        for name, default in FINGERPRINT_DEFAULTS.items():
            if view.get(name) == default:
                del view[name]
        return view

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None:
            check_base_url(value)
        return value

    @field_validator("api_key_env", "azure_ad_token_env")
    @classmethod
    def _env_name(cls, value: str | None) -> str | None:
        if value is not None and not ENV_NAME.match(value):
            raise ValueError(
                "must be the NAME of an environment variable holding the key (e.g. OPENAI_API_KEY), "
                "never the key itself"
            )
        return value

    @model_validator(mode="before")
    @classmethod
    def _provider_defaults(cls, data: Any) -> Any:
        """A provider's own default ``structured_output`` (its first in ``STRUCTURED_OUTPUT``)."""
        if isinstance(data, dict) and "structured_output" not in data and data.get("provider") in STRUCTURED_OUTPUT:
            data = {**data, "structured_output": STRUCTURED_OUTPUT[data["provider"]][0]}
        return data

    @model_validator(mode="after")
    def _provider_settings(self) -> ModelConfig:
        check_provider(self)
        return self

    @field_validator("batch_completion_window")
    @classmethod
    def _window(cls, value: str) -> str:
        if not COMPLETION_WINDOW.match(value):
            raise ValueError(f"must be a whole number of hours or days such as '24h' or '7d', got {value!r}")
        return value

    @property
    def streams(self) -> bool:
        """Whether this model's online requests are streamed (``stream`` with ``auto`` decided)."""
        if self.stream == "auto":
            return self.max_tokens is not None and self.max_tokens >= LONG_REPLY_TOKENS
        return self.stream

    @model_validator(mode="after")
    def _token_limit_needs_max_tokens(self) -> ModelConfig:
        if self.max_tokens_per_minute is not None and self.max_tokens is None:
            raise FieldProblem(
                "max_tokens",
                "max_tokens_per_minute needs max_tokens (the most tokens one reply may use): without it "
                "no request's tokens are known before its reply, and the limit could be passed",
            )
        return self

    @property
    def default_base_url(self) -> str | None:
        """``base_url``, or where the provider's API lives when that is fixed (Anthropic's)."""
        return self.base_url or DEFAULT_BASE_URLS.get(self.provider)

    def sampling_params(self) -> dict[str, Any]:
        """Request-body fields besides model, messages, seed and the structured-output fields."""
        params = {k: getattr(self, k) for k in ("temperature", "top_p", "max_tokens") if getattr(self, k) is not None}
        return {**params, **self.extra_body}


def check_base_url(url: str) -> None:
    """An endpoint is ``http(s)://host[:port][/path]``; anything else would fail only after retries."""
    parts = urlsplit(url) if url.isprintable() else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname or any(c.isspace() for c in url):
        raise ValueError(
            f"base_url {url[:100]!r} is not an http:// or https:// URL with a host (e.g. http://127.0.0.1:8000/v1)"
        )
    try:
        _ = parts.port  # raises on a port that is not a number in range
    except ValueError as exc:
        raise ValueError(f"base_url {url[:100]!r} has an invalid port") from exc
