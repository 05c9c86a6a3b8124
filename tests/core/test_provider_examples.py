"""The Azure OpenAI and Anthropic examples run as they are against the local test server (reached
through an endpoint override: the examples name port 8000), batch writer and online judge alike."""

from __future__ import annotations

import pytest

from dd_core import ModelOverride, generate, load_config
from dd_core.testing.llm_server import OpenAIServer
from tests.support import EXAMPLES, run_dd


@pytest.mark.parametrize("name", ["support_tickets_azure.yaml", "support_tickets_anthropic.yaml"])
def test_the_provider_examples_run_and_report_their_cost(tmp_path, name):
    config = load_config(EXAMPLES / name)
    assert {m.provider for m in config.models} == {name.split("_")[-1].removesuffix(".yaml")}
    assert run_dd("validate", EXAMPLES / name).returncode == 0
    with OpenAIServer(latency_ms=2, metrics=False) as server:
        server.set_batch_settings(processing_s=0.2)
        overrides = {m.alias: ModelOverride(base_url=server.root_url) for m in config.models}
        result = generate(EXAMPLES / name, 20, buffer_size=10, artifact_path=tmp_path, model_overrides=overrides)
        batches = server.batch_stats()["batches"]
    assert result.num_records == 20 and len(batches) == 4, "question and answer batches of 2 row groups"
    assert result.llm_usage["writer"]["batch_calls"] == 40 and result.llm_usage["judge"]["calls"] == 20
    assert result.metadata["llm_cost_usd"] > 0
