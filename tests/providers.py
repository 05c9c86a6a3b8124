"""Azure OpenAI and Anthropic models against the local test server, for the tests of both: their
settings, a config per provider, and what the server itself reported (batches, tokens)."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest

from tests.core.test_llm_columns import chain_config

#: The key the server requires (the same for every protocol); it must never reach a file or output.
KEY = "sk-provider-test-0123456789abcdefSECRET"
KEY_ENV = "DD_TEST_PROVIDER_KEY"
API_VERSION = "2024-10-21"
SETTINGS = {
    "azure": {"provider": "azure", "api_version": API_VERSION, "api_key_env": KEY_ENV},
    "anthropic": {"provider": "anthropic", "max_tokens": 256, "api_key_env": KEY_ENV},
}
PROVIDERS = tuple(SETTINGS)
PRICE = {"input_per_mtok": 3.0, "output_per_mtok": 15.0, "batch_discount": 0.5}


def varied_chain(url: str) -> dict:
    """``chain_config`` with a different prompt in every row: the Messages API has no seed, so
    without it rows of one topic would send the same request (and the server answer it alike)."""
    config = chain_config(url)
    config["columns"].insert(1, {"name": "case", "type": "uuid"})
    config["columns"][2]["prompt"] = "Write a question about {{ topic }} (case {{ case }})."
    return config


def config_for(server, provider: str, base: Callable[[str], dict] = varied_chain, **model) -> dict:
    """``base`` (a config of one model, alias ``writer``) served by ``server`` through ``provider``."""
    config = base(server.root_url)
    config["models"][0].update(SETTINGS[provider], **model)
    return config


def batch_mode(**model) -> dict:
    return {"batch": True, "batch_poll_interval_s": 0.05, **model}


def headers(provider: str) -> dict[str, str]:
    return {"api-key": KEY} if provider == "azure" else {"x-api-key": KEY, "anthropic-version": "2023-06-01"}


def server_batches(server, provider: str) -> list[dict]:
    return [b for b in server.batch_stats()["batches"] if b["protocol"] == provider]


def submitted_keys(server, provider: str) -> list[str]:
    """The custom ids of every request the provider's batches held (dd's cache keys)."""
    return [cid for b in server_batches(server, provider) for cid in b["custom_ids"]]


def reported_batch_tokens(server, provider: str) -> tuple[int, int]:
    """Input and output tokens the server reported in every answered line of the provider's batches."""
    prompt = completion = 0
    with httpx.Client(base_url=server.root_url, headers=headers(provider), trust_env=False) as http:
        for batch in server_batches(server, provider):
            for line in _result_lines(http, provider, batch["id"]):
                if provider == "azure":
                    if line["response"] and line["response"]["status_code"] == 200:
                        usage = line["response"]["body"]["usage"]
                        prompt += usage["prompt_tokens"]
                        completion += usage["completion_tokens"]
                elif line["result"]["type"] == "succeeded":
                    usage = line["result"]["message"]["usage"]
                    prompt += usage["input_tokens"] + usage["cache_read_input_tokens"]
                    prompt += usage["cache_creation_input_tokens"]
                    completion += usage["output_tokens"]
    return prompt, completion


def _result_lines(http: httpx.Client, provider: str, batch_id: str) -> list[dict]:
    if provider == "anthropic":
        response = http.get(f"/v1/messages/batches/{batch_id}/results")
        return [json.loads(line) for line in response.text.splitlines()] if response.status_code == 200 else []
    status = http.get(f"/openai/batches/{batch_id}", params={"api-version": API_VERSION}).json()
    lines = []
    for file_id in (status["output_file_id"], status["error_file_id"]):
        if file_id:
            content = http.get(f"/openai/files/{file_id}/content", params={"api-version": API_VERSION}).text
            lines += [json.loads(line) for line in content.splitlines()]
    return lines


def server_fixtures(**server_args) -> tuple:
    """The ``server`` (one test server per module, requiring ``KEY``; no /metrics, as at a hosted
    provider) and ``fresh`` (that server reset, with ``KEY`` in ``KEY_ENV``) fixtures of a provider
    test module: ``server, fresh = server_fixtures()``."""
    from dd_core.testing.llm_server import OpenAIServer

    @pytest.fixture(scope="module", name="server")
    def server():
        with OpenAIServer(latency_ms=2, api_key=KEY, metrics=False, **server_args) as running:
            yield running

    @pytest.fixture(name="fresh")
    def fresh(server, monkeypatch):
        server.reset_for_next_test()
        monkeypatch.setenv(KEY_ENV, KEY)
        return server

    return server, fresh
