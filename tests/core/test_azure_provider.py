"""What is Azure OpenAI's own: the deployment in the URL (and an override of it), Entra ID tokens,
retry-after-ms, the content filter, Azure's error bodies, and batch files Azure is still processing."""

from __future__ import annotations

import pytest

from dd_core import GenerationError, ModelOverride, generate
from tests.core.test_providers import table_of
from tests.providers import KEY, batch_mode, config_for, server_batches, server_fixtures

server, fresh = server_fixtures(models=("test-model", "prod-gpt"))


def test_an_entra_id_token_goes_as_a_bearer_token(fresh, tmp_path, monkeypatch):
    monkeypatch.setenv("DD_TEST_AD_TOKEN", KEY)
    config = config_for(fresh, "azure", api_key_env=None, azure_ad_token_env="DD_TEST_AD_TOKEN")
    result = generate(config, 4, buffer_size=4, artifact_path=tmp_path)
    assert result.num_records == 4 and fresh.stats()["auth_header_requests"] == 8


def test_the_deployment_comes_from_the_config_or_an_override(fresh, tmp_path):
    config = config_for(fresh, "azure", model="gpt-4o-2024-08-06", deployment="test-model")
    generate(config, 2, buffer_size=2, artifact_path=tmp_path)
    assert {r["model"] for r in fresh.stats()["request_log"]} == {"test-model"}
    fresh.reset_stats()
    override = {"writer": ModelOverride(deployment="prod-gpt")}
    generate(config, 2, buffer_size=2, artifact_path=tmp_path, dataset_name="prod", model_overrides=override)
    assert {r["model"] for r in fresh.stats()["request_log"]} == {"prod-gpt"}


def test_a_deployment_the_resource_lacks_fails_naming_it(fresh, tmp_path):
    with pytest.raises(GenerationError) as caught:
        generate(config_for(fresh, "azure", deployment="gpt-5-nowhere"), 2, buffer_size=2, artifact_path=tmp_path)
    assert "HTTP 404: The API deployment for this resource does not exist" in str(caught.value)
    assert fresh.stats()["by_status"] == {"404": 2}, "one request per row: a 404 is not retried"


def test_retry_after_ms_is_preferred_to_retry_after(fresh, tmp_path):
    headers = {"retry-after": "3600", "retry-after-ms": "50"}
    body = '{"error": {"code": "429", "message": "Requests ... have exceeded the rate limit."}}'
    fresh.set_faults([{"kind": "raw", "status": 429, "headers": headers, "body": body, "times": 1}])
    result = generate(config_for(fresh, "azure", retry_wait_budget_s=30), 1, buffer_size=1, artifact_path=tmp_path)
    usage = result.llm_usage["writer"]
    assert (result.num_records, usage["throttled"], usage["retries"]) == (1, 1, 1)


def test_a_reply_withheld_by_the_content_filter_fails_its_cell_without_a_retry(fresh, tmp_path):
    body = (
        '{"id": "x", "object": "chat.completion", "choices": [{"index": 0, "finish_reason": "content_filter", '
        '"message": {"role": "assistant", "content": null}}], "usage": {"prompt_tokens": 3, "completion_tokens": 0}}'
    )
    fresh.set_faults([{"kind": "raw", "status": 200, "body": body}])
    with pytest.raises(GenerationError) as caught:
        generate(config_for(fresh, "azure"), 3, buffer_size=3, artifact_path=tmp_path)
    assert "content filter withheld the reply" in str(caught.value)
    assert fresh.stats()["requests_total"] == 3, "one request per row, none retried"


def test_batches_wait_for_the_input_file_and_accept_azures_shapes(fresh, tmp_path):
    """The server answers an upload 'pending', a new batch 'Validating' with null counts and ISO times."""
    fresh.set_batch_settings(validating_s=0.3)
    batched = generate(config_for(fresh, "azure", **batch_mode()), 10, buffer_size=10, artifact_path=tmp_path)
    online = generate(config_for(fresh, "azure"), 10, buffer_size=10, artifact_path=tmp_path, dataset_name="on")
    assert table_of(batched.path).equals(table_of(online.path))
    log = fresh.batch_stats()["log"]
    assert [e["op"] for e in log if e["op"] in ("upload", "create")] == ["upload", "create"] * 2
    assert all(b["status"] == "completed" for b in server_batches(fresh, "azure"))
