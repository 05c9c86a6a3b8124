"""The combined dataset asset, given a ``HubTarget``, also publishes each materialization to the
Hugging Face Hub (a local Hub server), with its dataset card."""

from __future__ import annotations

import huggingface_hub
import pandas as pd
import pytest
from huggingface_hub import constants as hub_constants

from dd_core import generate
from dd_core.testing.hub_server import HubServer
from dd_dagster import DataDesignerResource, HubTarget, build_dataset_definitions
from tests.dagster.helpers import materialize_dataset, run_range, tiny_config

TOKEN = "hf_dd_dagster_token_0123456789"


@pytest.fixture
def hub(monkeypatch):
    with HubServer(tokens={TOKEN: "dd-user"}) as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        monkeypatch.setenv("HF_TOKEN", TOKEN)
        monkeypatch.setattr(hub_constants, "HF_HUB_DISABLE_XET", True)
        yield server


def test_the_combined_asset_pushes_to_the_hub(hub, tiny_registered, tmp_path):
    defs = build_dataset_definitions(
        tiny_config(),
        num_records=200,
        buffer_size=50,
        resource=DataDesignerResource(artifact_path=str(tmp_path / "artifacts")),
        hub=HubTarget("dd-user/tiny", private=True, license="mit"),
    )
    run_range(defs, tiny_registered, 0, 3)
    result = materialize_dataset(defs, tiny_registered)
    assert result.success
    metadata = result.get_asset_materialization_events()[0].materialization.metadata
    assert metadata["hub_commit"].value.startswith(f"{hub.url}/datasets/dd-user/tiny/commit/")
    repo = hub.hub.repos["dd-user/tiny"]
    assert repo.private and sorted(repo.commit("main").files) == ["README.md", "data/train-00000-of-00001.parquet"]
    card = huggingface_hub.DatasetCard(hub.hub.read(repo.commit("main").files["README.md"]).decode())
    assert card.data.license == "mit" and card.data.dataset_info["splits"][0]["num_examples"] == 200
    local = huggingface_hub.hf_hub_download(
        "dd-user/tiny", "data/train-00000-of-00001.parquet", repo_type="dataset", endpoint=hub.url, token=TOKEN,
        local_dir=tmp_path / "download",
    )  # fmt: skip
    expected = generate(tiny_config(), 200, buffer_size=50, artifact_path=tmp_path / "reference").load()
    assert pd.read_parquet(local).equals(expected)
