"""What the factory builds, checked without running anything."""

from __future__ import annotations

import runpy
import shutil

import dagster as dg
import pytest

from dd_core import fingerprint, load_config
from dd_dagster import DataDesignerResource, DatasetAssetProps, DDDatasetTranslator, build_dataset_definitions
from tests.dagster.helpers import tiny_config, tiny_defs
from tests.support import EXAMPLES


def test_assets_partitions_versions_and_policies(tmp_path):
    defs = tiny_defs(tmp_path, num_records=1050, buffer_size=100, row_groups_per_run=7)
    row_groups = defs.resolve_assets_def(dg.AssetKey(["tiny_row_groups"]))
    combined = defs.resolve_assets_def(dg.AssetKey(["tiny"]))
    fp = fingerprint(load_config(tiny_config()))["config_hash"]
    assert isinstance(row_groups.partitions_def, dg.DynamicPartitionsDefinition)
    assert row_groups.partitions_def.name == "tiny_row_groups"
    assert row_groups.code_versions_by_key[row_groups.key] == fp
    assert row_groups.backfill_policy.max_partitions_per_run == 7
    assert combined.partitions_def is None
    assert row_groups.key in {dep.asset_key for dep in combined.specs_by_key[combined.key].deps}
    assert {c.name for c in combined.check_specs} == {"row_count_matches"}
    assert all(c.blocking for c in combined.check_specs)
    [current] = [c for c in defs.resolve_asset_graph().asset_check_keys if c.asset_key == row_groups.key]
    assert current.name == "row_groups_current"
    assert "data_designer" in row_groups.required_resource_keys


def test_job_sensor_and_optional_schedule(tmp_path):
    defs = tiny_defs(tmp_path)
    job = defs.resolve_job_def("tiny_row_groups_job")
    assert job.executor_def.name == "in_process"
    assert job.partitions_def.name == "tiny_row_groups"
    sensor = defs.resolve_sensor_def("tiny_register_row_groups")
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert not list(defs.schedules or [])
    scheduled = tiny_defs(tmp_path, refresh_cron="0 3 * * *")
    assert scheduled.resolve_schedule_def("tiny_refresh").cron_schedule == "0 3 * * *"


def test_translator_is_the_one_override_point(tmp_path):
    class Custom(DDDatasetTranslator):
        def get_asset_spec(self, props: DatasetAssetProps) -> dg.AssetSpec:
            spec = super().get_asset_spec(props)
            return spec.replace_attributes(
                key=spec.key.with_prefix("synthetic"), group_name="synthetic", owners=["team:ml"]
            )

    defs = tiny_defs(tmp_path, translator=Custom())
    keys = {key.to_user_string() for key in defs.resolve_asset_graph().get_all_asset_keys()}
    assert keys == {"synthetic/tiny_row_groups", "synthetic/tiny"}
    spec = defs.resolve_assets_def(dg.AssetKey(["synthetic", "tiny"])).specs_by_key[dg.AssetKey(["synthetic", "tiny"])]
    assert spec.group_name == "synthetic" and spec.owners == ["team:ml"]


def test_several_datasets_share_one_code_location(tmp_path):
    defs = dg.Definitions.merge(
        build_dataset_definitions(EXAMPLES / "customers.yaml", num_records=10_000),
        build_dataset_definitions(EXAMPLES / "orders_from_seed.yaml", num_records=5_000, buffer_size=500),
        dg.Definitions(resources={"data_designer": DataDesignerResource(artifact_path=str(tmp_path))}),
    )
    dg.Definitions.validate_loadable(defs)
    assert {j.name for j in defs.resolve_all_job_defs() if not j.name.startswith("__")} == {
        "customers_row_groups_job",
        "orders_row_groups_job",
    }


def test_example_code_location_loads_wherever_the_examples_folder_is(tmp_path, monkeypatch):
    """examples/definitions.py finds its configs beside itself, not through dd_dagster's install
    location: a copy of the folder elsewhere (as in the Kubernetes image) serves its own configs."""
    copy = tmp_path / "elsewhere" / "examples"
    shutil.copytree(EXAMPLES, copy, ignore=shutil.ignore_patterns("dd_components"))
    monkeypatch.chdir(tmp_path)
    defs = runpy.run_path(str(copy / "definitions.py"))["defs"]
    dg.Definitions.validate_loadable(defs)
    customers = defs.resolve_assets_def(dg.AssetKey(["customers"]))
    assert str(copy / "customers.yaml") in str(customers.specs_by_key[dg.AssetKey(["customers"])].metadata)


@pytest.mark.parametrize(
    ("kwargs", "words"), [({"num_records": 0}, "at least 1"), ({"row_groups_per_run": 0}, "row_groups_per_run")]
)
def test_bad_factory_arguments_are_clear(tmp_path, kwargs, words):
    from dd_core import DDConfigError

    with pytest.raises((DDConfigError, ValueError), match=words):
        tiny_defs(tmp_path, **kwargs)
