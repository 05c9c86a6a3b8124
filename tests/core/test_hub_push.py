"""``ddsynth push``: a finished dataset to a Hugging Face Hub dataset repo (a local Hub server
speaking huggingface_hub's protocol), with its card; pushing again uploads only what is missing;
hostile cases (a 403 mid-push, a repo that exists with other files, an unfinished dataset, a
token that may not write) end in one message and leave the repo as it was."""

from __future__ import annotations

import os

import datasets
import huggingface_hub
import pytest
from huggingface_hub import constants as hub_constants

from dd_core import generate
from dd_core.storage.faults import InjectedFault, reset_fault_hits
from dd_core.testing.hub_server import HubServer
from tests.support import EXAMPLES, run_dd

TOKEN = "hf_dd_test_token_0123456789"
CUSTOMERS = EXAMPLES / "customers.yaml"


@pytest.fixture
def hub(monkeypatch):
    # For this process's own huggingface_hub calls (it read HF_HUB_DISABLE_XET when imported).
    monkeypatch.setattr(hub_constants, "HF_HUB_DISABLE_XET", True)
    with HubServer(tokens={TOKEN: "dd-user"}) as server:
        yield server


def hub_env(hub: HubServer, token: str = TOKEN) -> dict[str, str]:
    # This server has no Xet storage: huggingface_hub 2.x uploads through Xet unless told not to.
    return {"HF_ENDPOINT": hub.url, "HF_TOKEN": token, "HF_HUB_DISABLE_XET": "1"}


def api(hub: HubServer) -> huggingface_hub.HfApi:
    return huggingface_hub.HfApi(endpoint=hub.url, token=TOKEN)


def uploads(hub: HubServer) -> int:
    return sum(1 for r in hub.faults.requests if r.startswith("PUT /lfs-upload/"))


@pytest.fixture(scope="module")
def customers(tmp_path_factory):
    return generate(CUSTOMERS, 2500, buffer_size=500, artifact_path=tmp_path_factory.mktemp("artifacts"))


def test_push_then_load_with_datasets_and_parse_the_card(hub, customers, tmp_path):
    run = run_dd("push", customers.path, "--repo", "dd-user/customers", "--license", "cc-by-4.0", env=hub_env(hub))
    assert run.returncode == 0, run.stderr
    assert "Pushed 5 parquet file(s) and the dataset card to dd-user/customers (main)" in run.stdout
    files = sorted(api(hub).list_repo_files("dd-user/customers", repo_type="dataset"))
    assert files == ["README.md"] + [f"data/train-{i:05d}-of-00005.parquet" for i in range(5)]
    local = huggingface_hub.snapshot_download(
        "dd-user/customers", repo_type="dataset", local_dir=tmp_path / "snapshot", endpoint=hub.url, token=TOKEN
    )
    loaded = datasets.load_dataset("parquet", data_files=f"{local}/data/train-*.parquet", split="train")
    assert loaded.to_pandas().equals(customers.load())
    card = huggingface_hub.DatasetCard.load(tmp_path / "snapshot" / "README.md")
    assert card.data.license == "cc-by-4.0" and card.data.size_categories == ["1K<n<10K"]
    assert card.data.configs == [
        {"config_name": "default", "data_files": [{"split": "train", "path": "data/train-*.parquet"}]}
    ]
    features = card.data.dataset_info["features"]
    assert [f["name"] for f in features] == list(customers.load().columns)
    assert {"name": "score", "dtype": "float64"} in features
    assert card.data.dataset_info["splits"][0]["num_examples"] == 2500
    assert customers.metadata["config_hash"] in card.text and '"name": "customers"' in card.text
    # Nothing of the token anywhere: output, the card, the dataset folder.
    everything = run.stdout + run.stderr + card.content
    everything += "".join(p.read_text(errors="replace") for p in customers.path.rglob("*.json"))
    assert TOKEN not in everything


def test_pushing_again_uploads_only_what_is_missing(hub, customers):
    assert run_dd("push", customers.path, "--repo", "dd-user/customers", env=hub_env(hub)).returncode == 0
    before = uploads(hub)
    again = run_dd("push", customers.path, "--repo", "dd-user/customers", env=hub_env(hub))
    assert again.returncode == 0, again.stderr
    assert "already holds this dataset and card; nothing was uploaded" in again.stdout
    assert uploads(hub) == before
    assert len(hub.hub.repos["dd-user/customers"].commits) == 2  # the repo's first commit, and the push


def test_a_403_mid_push_commits_nothing_and_the_next_push_uploads_the_rest(hub, customers):
    hub.faults.lfs_upload_status, hub.faults.lfs_upload_at = 403, 3
    run = run_dd("push", customers.path, "--repo", "dd-user/customers", env=hub_env(hub))
    assert run.returncode == 6, run.stderr
    assert "the Hub answered 403" in run.stderr and "Nothing was committed" in run.stderr
    assert "Traceback" not in run.stderr and TOKEN not in run.stderr
    repo = hub.hub.repos["dd-user/customers"]
    assert repo.commit("main").files == {}  # nothing committed
    stored = len(hub.hub.lfs)
    assert 0 < stored < 5
    hub.faults.lfs_upload_status = None
    before = uploads(hub)
    again = run_dd("push", customers.path, "--repo", "dd-user/customers", env=hub_env(hub))
    assert again.returncode == 0, again.stderr
    assert uploads(hub) - before == 5 - stored  # only the missing files
    assert len(repo.commit("main").files) == 6


def test_a_repo_that_exists_with_other_files(hub, customers):
    client = api(hub)
    client.create_repo("dd-user/customers", repo_type="dataset")
    for path, content in [
        ("notes.txt", b"keep me"),
        ("data/old-00000.parquet", b"PAR1 stale"),
        ("README.md", b"# old"),
    ]:
        client.upload_file(path_or_fileobj=content, path_in_repo=path, repo_id="dd-user/customers", repo_type="dataset")
    run = run_dd("push", customers.path, "--repo", "dd-user/customers", env=hub_env(hub))
    assert run.returncode == 0, run.stderr
    assert "Removed 1 file(s) under data/ that were not part of this dataset: data/old-00000.parquet" in run.stdout
    files = sorted(client.list_repo_files("dd-user/customers", repo_type="dataset"))
    assert files == ["README.md"] + [f"data/train-{i:05d}-of-00005.parquet" for i in range(5)] + ["notes.txt"]


def test_an_unfinished_dataset_is_refused(hub, tmp_path, monkeypatch):
    monkeypatch.setenv("DD_FAULT_POINT", "parquet_renamed")
    monkeypatch.setenv("DD_FAULT_HIT", "2")
    monkeypatch.setenv("DD_FAULT_ACTION", "raise")
    reset_fault_hits()
    with pytest.raises(InjectedFault):
        generate(CUSTOMERS, 2500, buffer_size=500, artifact_path=tmp_path)
    run = run_dd("push", tmp_path / "customers", "--repo", "dd-user/customers", env=hub_env(hub))
    assert run.returncode == 2, run.stderr
    assert "is not finished yet" in run.stderr
    assert "dd-user/customers" not in hub.hub.repos


def test_a_token_that_may_not_write(hub, customers):
    run = run_dd("push", customers.path, "--repo", "dd-user/customers", env=hub_env(hub, "hf_wrong_token_4242"))
    assert run.returncode == 6, run.stderr
    assert "the Hub answered 401" in run.stderr and "HF_TOKEN" in run.stderr
    assert "hf_wrong_token_4242" not in run.stderr + run.stdout


def test_private_repo_on_a_branch(hub, customers):
    run = run_dd("push", customers.path, "--repo", "dd-user/secret", "--private", "--revision", "v1", env=hub_env(hub))
    assert run.returncode == 0, run.stderr
    repo = hub.hub.repos["dd-user/secret"]
    assert repo.private and len(repo.commit("v1").files) == 6 and repo.commit("main").files == {}
    anonymous = huggingface_hub.HfApi(endpoint=hub.url, token=False)
    with pytest.raises(huggingface_hub.errors.RepositoryNotFoundError):
        anonymous.list_repo_files("dd-user/secret", repo_type="dataset")


def test_push_from_object_storage(hub, s3_bucket):
    result = generate(CUSTOMERS, 1000, buffer_size=500, artifact_path=s3_bucket)
    run = run_dd("push", result.path, "--repo", "dd-user/from-s3", env=hub_env(hub))
    assert run.returncode == 0, run.stderr
    files = sorted(hub.hub.repos["dd-user/from-s3"].commit("main").files)
    assert files == ["README.md", "data/train-00000-of-00002.parquet", "data/train-00001-of-00002.parquet"]
    assert os.environ["AWS_SECRET_ACCESS_KEY"] not in run.stdout + run.stderr
