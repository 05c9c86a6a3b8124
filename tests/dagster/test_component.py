"""``dd_dagster.DatasetComponent`` and the example components project (examples/dd_components):
registered for ``dg``, loaded by ``dg check defs`` and ``dagster definitions validate``, and
giving the same assets as the factory."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from dd_dagster import DataDesignerResource, DatasetAssetProps, DDDatasetTranslator, build_dataset_definitions
from tests.support import EXAMPLES

PROJECT = EXAMPLES / "dd_components"
DATASETS = PROJECT / "src" / "dd_components" / "defs" / "datasets"
BIN = Path(sys.executable).parent
ENV = {**os.environ, "DAGSTER_DISABLE_TELEMETRY": "1"}


def _cli(*args: str, cwd: Path = PROJECT, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / args[0]), *args[1:]], cwd=cwd, env=env or ENV, capture_output=True, text=True, timeout=300
    )


def test_dg_lists_the_component():
    listed = _cli("dg", "list", "components", "--json")
    assert listed.returncode == 0, listed.stderr
    assert "dd_dagster.DatasetComponent" in listed.stdout


@pytest.mark.parametrize("command", [("dg", "check", "defs"), ("dagster", "definitions", "validate")])
def test_example_project_loads(command):
    checked = _cli(*command)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_an_invalid_attribute_is_reported_with_its_place(tmp_path):
    project = tmp_path / "bad_project"
    shutil.copytree(PROJECT, project, ignore=shutil.ignore_patterns("*.egg-info", "artifacts", "__pycache__"))
    (project / "src" / "dd_components").rename(project / "src" / "dd_components_bad")
    pyproject = project / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('"dd_components', '"dd_components_bad'))
    defs_yaml = project / "src" / "dd_components_bad" / "defs" / "datasets" / "defs.yaml"
    defs_yaml.write_text(defs_yaml.read_text().replace("num_records: 20000", "num_records: lots", 1))
    checked = _cli("dg", "check", "defs", cwd=project, env={**ENV, "PYTHONPATH": str(project / "src")})
    assert checked.returncode != 0
    output = checked.stdout + checked.stderr
    assert "num_records" in output and "lots" in output


def _load_component_defs() -> dg.Definitions:
    return dg.load_from_defs_folder(path_within_project=PROJECT)


class _Owned(DDDatasetTranslator):
    """What the example's `translation` block does, in Python."""

    def get_asset_spec(self, props: DatasetAssetProps) -> dg.AssetSpec:
        return super().get_asset_spec(props).merge_attributes(owners=["team:synthetic-data"], tags={"tier": "demo"})


def test_component_and_factory_give_the_same_assets():
    from_component = _load_component_defs()
    from_factory = build_dataset_definitions(
        DATASETS / "accounts.yaml",
        num_records=20000,
        buffer_size=2000,
        row_groups_per_run=5,
        refresh_cron="0 4 * * *",
        translator=_Owned(),
        resource=DataDesignerResource(artifact_path=str(PROJECT / "artifacts")),
        resource_key="accounts_data_designer",
    )
    for key in (dg.AssetKey(["accounts"]), dg.AssetKey(["accounts_row_groups"])):
        a = from_component.resolve_assets_def(key)
        b = from_factory.resolve_assets_def(key)
        # dg adds where the component came from: its object, and a code reference to defs.yaml.
        metadata = dict(a.specs_by_key[key].metadata)
        assert metadata.pop("dagster/component_origin").class_name == "DatasetComponent"
        config_ref, defs_ref = metadata["dagster/code_references"].code_references
        assert defs_ref.file_path == str(DATASETS / "defs.yaml")
        metadata["dagster/code_references"] = dg.CodeReferencesMetadataValue(code_references=[config_ref])
        assert a.specs_by_key[key].replace_attributes(metadata=metadata) == b.specs_by_key[key]
        assert (a.partitions_def, a.backfill_policy, a.code_versions_by_key, a.check_keys) == (
            b.partitions_def,
            b.backfill_policy,
            b.code_versions_by_key,
            b.check_keys,
        )
    names = lambda defs, kind: {d.name for d in getattr(defs, kind) or [] if d.name.startswith("accounts")}  # noqa: E731
    for kind in ("sensors", "schedules", "jobs"):
        assert names(from_component, kind) == names(from_factory, kind), kind
    resource = from_component.resources["accounts_data_designer"]
    assert resource.artifact_path == str(PROJECT / "artifacts")


def test_each_component_has_its_own_resource_and_keys_stay_secret(monkeypatch):
    monkeypatch.setenv("DD_LLM_API_KEY", "sk-component-secret")
    defs = _load_component_defs()
    reviews = defs.resources["reviews_data_designer"]
    endpoint = reviews.models["writer"]
    assert (endpoint.base_url, endpoint.max_parallel_requests) == ("http://127.0.0.1:8000/v1", 16)
    assert "sk-component-secret" not in repr(reviews.models) and "DD_LLM_API_KEY" in repr(reviews.models)
    spec = defs.resolve_assets_def(dg.AssetKey(["reviews"])).specs_by_key[dg.AssetKey(["reviews"])]
    assert spec.group_name == "llm_datasets" and spec.owners == ["team:synthetic-data"]
