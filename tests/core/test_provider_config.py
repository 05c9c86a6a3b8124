"""The provider of a model entry: each provider's settings checked with the field named, the
fingerprint moved by the provider and not by endpoints, keys, API versions or deployments, and
endpoint overrides that may not change the provider."""

from __future__ import annotations

import pytest

from dd_core import DDConfigError, fingerprint, load_config
from dd_core.engine.llm.runtime import LLMRuntime, ModelOverride
from tests.core.test_llm_columns import all_types_config, chain_config

URL = "http://127.0.0.1:1"
AZURE = {"provider": "azure", "api_version": "2024-10-21"}
ANTHROPIC = {"provider": "anthropic", "max_tokens": 512}


def model_of(**model):
    return load_config(chain_config(URL, **model)).models[0]


def hash_of(config: dict) -> str:
    return fingerprint(load_config(config))["config_hash"]


def chain_hash(**model) -> str:
    return hash_of(chain_config(URL, **model))


def test_openai_is_the_default_and_writing_it_out_keeps_every_fingerprint():
    assert model_of().provider == "openai"
    assert chain_hash() == chain_hash(provider="openai")
    config = all_types_config(URL)
    config["models"][0]["provider"] = "openai"
    assert hash_of(config) == hash_of(all_types_config(URL))


def test_the_provider_changes_the_fingerprint():
    hashes = {chain_hash(max_tokens=512), chain_hash(**AZURE, max_tokens=512), chain_hash(**ANTHROPIC)}
    assert len(hashes) == 3


def test_endpoints_keys_versions_deployments_and_limits_leave_the_fingerprint_alone():
    base = chain_hash(**AZURE)
    assert base == chain_hash(
        **{**AZURE, "api_version": "2025-04-01-preview"},
        deployment="gpt4o-prod",
        base_url="https://other.openai.azure.com",
        api_key_env="AZURE_OPENAI_API_KEY",
        max_parallel_requests=64,
        max_requests_per_minute=600,
        batch=True,
        price={"input_per_mtok": 2.5, "output_per_mtok": 10},
    )
    assert chain_hash(**AZURE, azure_ad_token_env="AZURE_OPENAI_AD_TOKEN") == base
    assert chain_hash(**ANTHROPIC) == chain_hash(**ANTHROPIC, base_url="https://proxy.example/v1", timeout_s=600)


def test_inference_parameters_and_the_structured_mode_change_the_fingerprint():
    config = all_types_config(URL)
    config["models"][0].update(ANTHROPIC)
    base = hash_of(config)
    for change in ({"max_tokens": 1024}, {"temperature": 0.5}, {"structured_output": "json_schema"}):
        changed = all_types_config(URL)
        changed["models"][0].update(ANTHROPIC, **change)
        assert hash_of(changed) != base, change
    explicit = all_types_config(URL)
    explicit["models"][0].update(ANTHROPIC, structured_output="tool")
    assert hash_of(explicit) == base, "Anthropic's default written out"


def test_provider_defaults():
    assert model_of(**ANTHROPIC).structured_output == "tool"
    assert model_of(provider="anthropic", max_tokens=8, base_url=None).default_base_url == "https://api.anthropic.com"
    assert model_of(**AZURE).structured_output == model_of().structured_output == "json_schema"


@pytest.mark.parametrize(
    ("model", "field", "words"),
    [
        ({"provider": "azure"}, "api_version", "needs its REST API version"),
        ({**AZURE, "api_version": "v1"}, "api_version", "must look like '2024-10-21'"),
        ({"api_version": "2024-10-21"}, "api_version", "is an Azure OpenAI setting"),
        ({"deployment": "d"}, "deployment", "is an Azure OpenAI setting"),
        ({**ANTHROPIC, "azure_ad_token_env": "TOKEN"}, "azure_ad_token_env", "provider is 'anthropic'"),
        ({**AZURE, "api_key_env": "KEY", "azure_ad_token_env": "TOKEN"}, "azure_ad_token_env", "either api_key_env"),
        ({**AZURE, "azure_ad_token_env": "sk-not-a-name!"}, "azure_ad_token_env", "NAME of an environment variable"),
        ({**AZURE, "batch_completion_window": "48h"}, "batch_completion_window", "one completion window, '24h'"),
        ({"provider": "anthropic"}, "max_tokens", "needs max_tokens"),
        ({**ANTHROPIC, "temperature": 1.5}, "temperature", "from 0 to 1"),
        ({**ANTHROPIC, "batch_completion_window": "1h"}, "batch_completion_window", "'24h'"),
        ({**ANTHROPIC, "structured_output": "json_object"}, "structured_output", "takes 'tool' or 'json_schema'"),
        ({**ANTHROPIC, "extra_body": {"system": "x"}}, "extra_body", "['system'] are set by dd"),
        ({**ANTHROPIC, "extra_body": {"tools": []}}, "extra_body", "['tools'] are set by dd"),
        ({**AZURE, "extra_body": {"response_format": {}}}, "extra_body", "['response_format'] are set by dd"),
        ({"provider": "bedrock"}, "provider", "'openai', 'azure' or 'anthropic'"),
    ],
)
def test_provider_settings_are_checked_naming_the_field(model, field, words):
    with pytest.raises(DDConfigError) as caught:
        load_config(chain_config(URL, **model))
    assert f"models.0.{field}" in str(caught.value) and words in str(caught.value), str(caught.value)


def test_anthropic_takes_extra_fields_it_knows():
    assert model_of(**ANTHROPIC, extra_body={"top_k": 5, "stop_sequences": ["END"]}).extra_body["top_k"] == 5


def endpoint(model: dict, override: ModelOverride | None = None, env: dict | None = None, monkeypatch=None):
    config = load_config(chain_config(URL, **model))
    for name, value in (env or {}).items():
        monkeypatch.setenv(name, value)
    runtime = LLMRuntime(overrides={"writer": override} if override else {})
    return runtime.endpoint(config.models[0])


def test_an_override_may_not_change_the_provider(monkeypatch):
    with pytest.raises(DDConfigError) as caught:
        endpoint(AZURE, ModelOverride(provider="anthropic"))
    assert "models.provider" in str(caught.value) and "says provider 'anthropic'" in str(caught.value)
    assert endpoint(AZURE, ModelOverride(provider="azure")).model.provider == "azure"


def test_an_override_sets_the_azure_deployment_and_version_for_this_run_only(monkeypatch):
    reached = endpoint(
        {**AZURE, "deployment": "dev"}, ModelOverride(api_version="2025-04-01-preview", deployment="prod")
    )
    assert (reached.model.api_version, reached.model.deployment) == ("2025-04-01-preview", "prod")
    with pytest.raises(DDConfigError, match="are Azure OpenAI settings"):
        endpoint(ANTHROPIC, ModelOverride(deployment="prod"))


def test_an_entra_id_token_is_a_bearer_secret(monkeypatch):
    reached = endpoint(
        {**AZURE, "azure_ad_token_env": "DD_TEST_TOKEN"}, env={"DD_TEST_TOKEN": "eyJ0.token.x"}, monkeypatch=monkeypatch
    )
    assert reached.bearer and reached.api_key == "eyJ0.token.x"
    keyed = endpoint(
        {**AZURE, "api_key_env": "DD_TEST_KEY"}, env={"DD_TEST_KEY": "azure-key-1"}, monkeypatch=monkeypatch
    )
    assert not keyed.bearer and keyed.api_key == "azure-key-1"
    with pytest.raises(DDConfigError, match=r"reads its token from \$DD_TEST_UNSET"):
        endpoint({**AZURE, "azure_ad_token_env": "DD_TEST_UNSET"})
    with pytest.raises(DDConfigError, match="for Azure OpenAI models only"):
        endpoint(ANTHROPIC, ModelOverride(azure_ad_token="eyJ0"))


def test_anthropic_needs_no_base_url_and_azure_does():
    assert (
        endpoint({"provider": "anthropic", "max_tokens": 8, "base_url": None}).base_url == "https://api.anthropic.com"
    )
    with pytest.raises(DDConfigError, match="has no base_url"):
        endpoint({**AZURE, "base_url": None})
