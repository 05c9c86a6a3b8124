"""How a run reaches its models: endpoints, keys and limits (overridable), and the cache folder.

Overrides come from the caller (e.g. the Dagster resource), never from the config, and are
never written anywhere: keys live only in request headers.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from dd_core import redaction
from dd_core.config.dataset import DatasetConfig
from dd_core.config.llm_columns import LLMColumn
from dd_core.config.models import ModelConfig, check_base_url
from dd_core.errors import ConfigIssue, DDConfigError
from dd_core.storage.filesystems import StoragePath


@dataclass(frozen=True)
class ModelOverride:
    base_url: str | None = None
    api_key: str | None = field(default=None, repr=False)
    max_parallel_requests: int | None = None
    timeout_s: float | None = None
    #: This process's share of the model's per-minute limits (worker processes split them).
    max_requests_per_minute: float | None = None
    max_tokens_per_minute: float | None = None


@dataclass(frozen=True)
class Endpoint:
    #: The model as this run reaches it (the config's entry with the override's protocol settings).
    model: ModelConfig
    base_url: str
    api_key: str | None = field(repr=False)
    max_parallel_requests: int
    timeout_s: float
    max_requests_per_minute: float | None = None
    max_tokens_per_minute: float | None = None


@dataclass
class LLMRuntime:
    #: Where successful calls are kept (one log per row group); None keeps them in memory only.
    cache_dir: StoragePath | None = None
    overrides: dict[str, ModelOverride] = field(default_factory=dict)
    #: Adaptive concurrency carried from one row group to the next, per model alias.
    limits: dict[str, int] = field(default_factory=dict)

    def endpoint(self, model: ModelConfig) -> Endpoint:
        """Where and how to call ``model``; every key it returns is known to ``dd_core.redaction``."""
        override = self.overrides.get(model.alias, ModelOverride())
        base_url = override.base_url or model.base_url
        if not base_url:
            raise DDConfigError(
                [
                    ConfigIssue(
                        f"model '{model.alias}' has no base_url; set it in the config or pass an endpoint override",
                        None,
                        "models.base_url",
                    )
                ]
            )
        try:
            check_base_url(base_url)
        except ValueError as exc:
            raise DDConfigError([ConfigIssue(f"model '{model.alias}': {exc}", None, "models.base_url")]) from exc
        api_key = override.api_key
        source = "the key passed for it"
        if api_key is None and model.api_key_env:
            api_key = os.environ.get(model.api_key_env)
            source = f"${model.api_key_env}"
            if not api_key:
                raise DDConfigError(
                    [
                        ConfigIssue(
                            f"model '{model.alias}' reads its API key from ${model.api_key_env}, which is not set",
                            None,
                            "models.api_key_env",
                        )
                    ]
                )
        redaction.register(api_key)
        if api_key is not None and not _usable_in_header(api_key):
            raise DDConfigError(
                [
                    ConfigIssue(
                        f"model '{model.alias}': the API key in {source} contains a line break or another character an HTTP "
                        "header cannot carry (the key itself is not shown); check how the variable was set",
                        None,
                        "models.api_key_env",
                    )
                ]
            )
        return Endpoint(
            model=model,
            base_url=base_url,
            api_key=api_key,
            max_parallel_requests=override.max_parallel_requests or model.max_parallel_requests,
            timeout_s=override.timeout_s or model.timeout_s,
            max_requests_per_minute=override.max_requests_per_minute or model.max_requests_per_minute,
            max_tokens_per_minute=override.max_tokens_per_minute or model.max_tokens_per_minute,
        )

    def check_endpoints(self, config: DatasetConfig) -> None:
        """Resolve every model an LLM column uses (URL, key) before anything is written."""
        for alias in sorted({c.model for c in config.columns if isinstance(c, LLMColumn)}):
            self.endpoint(config.model(alias))


def _usable_in_header(value: str) -> bool:
    """Visible Latin-1 text without line breaks (what an Authorization header may hold)."""
    return all(" " <= ch <= "~" or "\xa0" <= ch <= "\xff" for ch in value)
