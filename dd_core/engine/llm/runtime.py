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
from dd_core.engine.llm.timeouts import Timeouts
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
    #: Checked against the config's: the provider is part of the fingerprint, so only the config sets it.
    provider: str | None = None
    #: Azure OpenAI: the API version and deployment of this deployment of dd, and a Microsoft Entra
    #: ID token instead of a key.
    api_version: str | None = None
    deployment: str | None = None
    azure_ad_token: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Endpoint:
    #: The model as this run reaches it (the config's entry with the override's API version and deployment).
    model: ModelConfig
    base_url: str
    api_key: str | None = field(repr=False)
    max_parallel_requests: int
    timeout_s: float
    max_requests_per_minute: float | None = None
    max_tokens_per_minute: float | None = None
    #: The secret is a bearer token (Azure OpenAI with Microsoft Entra ID), not an API key.
    bearer: bool = False

    @property
    def timeouts(self) -> Timeouts:
        """The model's timeouts, with this run's ``timeout_s``."""
        return Timeouts.of(self.model, self.timeout_s)


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
        if override.provider is not None and override.provider != model.provider:
            raise _problem(
                model,
                f": the endpoint override says provider '{override.provider}' but the config says "
                f"'{model.provider}'; the provider changes what the model writes, so set it in the config",
                "provider",
            )
        base_url = override.base_url or model.default_base_url
        if not base_url:
            raise _problem(model, " has no base_url; set it in the config or pass an endpoint override", "base_url")
        try:
            check_base_url(base_url)
        except ValueError as exc:
            raise _problem(model, f": {exc}", "base_url") from exc
        secret, bearer, source, field_name = self._secret(model, override)
        redaction.register(secret)
        if secret is not None and not _usable_in_header(secret):
            raise _problem(
                model,
                f": the {'token' if bearer else 'API key'} in {source} contains a line break or another character an "
                "HTTP header cannot carry (the key itself is not shown); check how the variable was set",
                field_name,
            )
        reached = {
            name: value
            for name, value in (("api_version", override.api_version), ("deployment", override.deployment))
            if value is not None
        }
        if reached and model.provider != "azure":
            raise _problem(
                model,
                f": {sorted(reached)} are Azure OpenAI settings; this model's provider is '{model.provider}'",
                sorted(reached)[0],
            )
        return Endpoint(
            model=model.model_copy(update=reached) if reached else model,
            base_url=base_url,
            api_key=secret,
            max_parallel_requests=override.max_parallel_requests or model.max_parallel_requests,
            timeout_s=override.timeout_s or model.timeout_s,
            max_requests_per_minute=override.max_requests_per_minute or model.max_requests_per_minute,
            max_tokens_per_minute=override.max_tokens_per_minute or model.max_tokens_per_minute,
            bearer=bearer,
        )

    @staticmethod
    def _secret(model: ModelConfig, override: ModelOverride) -> tuple[str | None, bool, str, str]:
        """(the key or token, whether it is a bearer token, where it came from, the config field)."""
        if override.api_key is not None:
            return override.api_key, False, "the key passed for it", "api_key_env"
        if override.azure_ad_token is not None:
            if model.provider != "azure":
                raise _problem(model, ": an Entra ID token is for Azure OpenAI models only", "azure_ad_token_env")
            return override.azure_ad_token, True, "the token passed for it", "azure_ad_token_env"
        for name, bearer in (("api_key_env", False), ("azure_ad_token_env", True)):
            variable = getattr(model, name)
            if variable:
                value = os.environ.get(variable)
                if not value:
                    raise _problem(
                        model, f" reads its {'token' if bearer else 'API key'} from ${variable}, which is not set", name
                    )
                return value, bearer, f"${variable}", name
        return None, False, "", "api_key_env"

    def check_endpoints(self, config: DatasetConfig) -> None:
        """Resolve every model an LLM column uses (URL, key) before anything is written."""
        for alias in sorted({c.model for c in config.columns if isinstance(c, LLMColumn)}):
            self.endpoint(config.model(alias))


def _problem(model: ModelConfig, message: str, field_name: str) -> DDConfigError:
    """``message`` follows the model's name: "has no base_url", or ": <what is wrong>"."""
    return DDConfigError([ConfigIssue(f"model '{model.alias}'{message}", None, f"models.{field_name}")])


def _usable_in_header(value: str) -> bool:
    """Visible Latin-1 text without line breaks (what an Authorization header may hold)."""
    return all(" " <= ch <= "~" or "\xa0" <= ch <= "\xff" for ch in value)
