"""Model endpoints and keys come from the resource; keys never reach metadata, logs, run config or files."""

from __future__ import annotations

import socket

import dagster as dg
import pytest
from dagster import serialize_value

from dd_core.testing.llm_server import OpenAIServer
from dd_dagster import (
    DagsterDataset,
    DataDesignerResource,
    ModelEndpoint,
    build_dataset_definitions,
    register_partitions,
)
from tests.core.test_llm_columns import chain_config
from tests.dagster.helpers import outcome, run_range
from tests.providers import varied_chain

SECRET = "sk-dagster-9d1e-NEVER-LOGGED"


def test_endpoint_override_and_env_var_key_stay_secret(tmp_path, instance, monkeypatch):
    monkeypatch.setenv("DD_SECRET_KEY", SECRET)
    config = chain_config("http://127.0.0.1:9/v1")  # unreachable: the resource must override it
    config["name"] = "tiny"
    with OpenAIServer(api_key=SECRET) as server:
        resource = DataDesignerResource(
            artifact_path=str(tmp_path),
            models={
                "writer": ModelEndpoint(
                    base_url=server.base_url, api_key=dg.EnvVar("DD_SECRET_KEY"), max_parallel_requests=4
                )
            },
        )
        defs = build_dataset_definitions(config, num_records=40, buffer_size=20, resource=resource)
        register_partitions(instance, DagsterDataset.create(config, 40, 20))
        result = run_range(defs, instance, 0, 1)
        assert outcome(result) == {0: "generated", 1: "generated"}
        assert server.stats()["succeeded"] == 80 and server.stats()["max_in_flight"] <= 4
    metadata = result.get_asset_materialization_events()[0].materialization.metadata
    assert metadata["llm/writer/calls"].value == 40
    events = instance.all_logs(result.run_id)
    assert events and all(SECRET not in serialize_value(e) for e in events)
    assert SECRET not in serialize_value(instance.get_run_by_id(result.run_id))
    for file in tmp_path.rglob("*"):
        if file.is_file():
            assert SECRET.encode() not in file.read_bytes(), file


def test_a_model_server_that_is_down_fails_the_run_before_any_row_group(tmp_path, instance):
    """The run's first step reaches every model with this deployment's endpoints: nothing
    listening fails it at once with dd's message (model, URL, cause, fix), and nothing is written."""
    with socket.socket() as dead:  # bound, never listening: connections are refused
        dead.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{dead.getsockname()[1]}/v1"
        config = chain_config("http://127.0.0.1:9/v1")
        config["name"] = "tiny"
        resource = DataDesignerResource(
            artifact_path=str(tmp_path / "artifacts"), models={"writer": ModelEndpoint(base_url=url)}
        )
        defs = build_dataset_definitions(config, num_records=40, buffer_size=20, resource=resource)
        register_partitions(instance, DagsterDataset.create(config, 40, 20))
        result = run_range(defs, instance, 0, 1, raise_on_error=False)
    assert not result.success and outcome(result) == {}
    description = result.get_step_failure_events()[0].step_failure_data.user_failure_data.description
    assert "model 'writer' (test-model)" in description and url in description and "connection refused" in description
    assert f"python -m dd_core.testing.llm_server --port {url.split(':')[2].split('/')[0]}" in description
    assert not (tmp_path / "artifacts").exists()


@pytest.mark.parametrize(
    ("settings", "endpoint"),
    [
        (
            {"provider": "azure", "api_version": "2024-06-01", "deployment": "dev-gpt"},
            {"provider": "azure", "api_version": "2024-10-21", "deployment": "test-model"},
        ),
        ({"provider": "anthropic", "max_tokens": 64}, {"provider": "anthropic"}),
    ],
    ids=["azure", "anthropic"],
)
def test_provider_settings_and_keys_come_from_the_resource(tmp_path, instance, monkeypatch, settings, endpoint):
    """The config names the provider; the resource its endpoint, API version, deployment and key (an EnvVar)."""
    monkeypatch.setenv("DD_SECRET_KEY", SECRET)
    config = varied_chain("https://unreachable.invalid")
    config["name"] = "tiny"
    config["models"][0].update(settings)
    with OpenAIServer(api_key=SECRET) as server:
        model = ModelEndpoint(base_url=server.root_url, api_key=dg.EnvVar("DD_SECRET_KEY"), **endpoint)
        resource = DataDesignerResource(artifact_path=str(tmp_path), models={"writer": model})
        defs = build_dataset_definitions(config, num_records=20, buffer_size=10, resource=resource)
        register_partitions(instance, DagsterDataset.create(config, 20, 10))
        result = run_range(defs, instance, 0, 1)
        assert outcome(result) == {0: "generated", 1: "generated"}
        assert server.stats()["succeeded"] == 40
        if settings["provider"] == "azure":
            assert {r["model"] for r in server.stats()["request_log"]} == {"test-model"}, "the resource's deployment"
    metadata = result.get_asset_materialization_events()[0].materialization.metadata
    assert metadata["models"].value == f"writer: {settings['provider']} test-model"
    asset = defs.resolve_assets_def(dg.AssetKey(["tiny_row_groups"]))
    assert asset.specs_by_key[dg.AssetKey(["tiny_row_groups"])].metadata["models"].value == metadata["models"].value
    assert all(SECRET not in serialize_value(e) for e in instance.all_logs(result.run_id))
    for file in tmp_path.rglob("*"):
        if file.is_file():
            assert SECRET.encode() not in file.read_bytes(), file


def test_the_resource_may_not_change_the_provider(tmp_path, instance):
    config = varied_chain("http://127.0.0.1:9")
    config["name"] = "tiny"
    config["models"][0].update(provider="azure", api_version="2024-10-21")
    resource = DataDesignerResource(artifact_path=str(tmp_path), models={"writer": ModelEndpoint(provider="openai")})
    defs = build_dataset_definitions(config, num_records=10, buffer_size=10, resource=resource)
    register_partitions(instance, DagsterDataset.create(config, 10, 10))
    # The run's first step resolves every model's endpoint before any row group: the step fails with dd's message.
    with pytest.raises(dg.Failure, match="says provider 'openai' but the config says 'azure'") as caught:
        run_range(defs, instance, 0, 0)
    assert "models.provider" in str(caught.value)
