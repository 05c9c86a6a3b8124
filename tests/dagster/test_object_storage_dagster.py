"""Dagster row groups and the combined dataset on an S3-compatible object store."""

from __future__ import annotations

from dd_core import generate
from dd_core.orchestration import read_table, storage_path
from dd_dagster import DataDesignerResource, build_dataset_definitions
from tests.dagster.helpers import materialize_dataset, outcome, run_range, tiny_config


def test_row_groups_and_combined_dataset_on_s3(s3_bucket, tiny_registered, tmp_path):
    artifacts = f"{s3_bucket}/dagster"
    defs = build_dataset_definitions(
        tiny_config(), num_records=200, buffer_size=50, resource=DataDesignerResource(artifact_path=artifacts)
    )
    first = run_range(defs, tiny_registered, 0, 3)
    assert outcome(first) == {i: "generated" for i in range(4)}
    paths = [e.materialization.metadata["path"].value for e in first.get_asset_materialization_events()]
    assert all(p.startswith(f"{artifacts}/tiny/") for p in paths)
    assert outcome(run_range(defs, tiny_registered, 0, 3)) == {i: "reused" for i in range(4)}
    result = materialize_dataset(defs, tiny_registered)
    assert all(e.passed for e in result.get_asset_check_evaluations())
    combined = read_table(
        storage_path(result.get_asset_materialization_events()[0].materialization.metadata["path"].value)
    )
    assert combined.to_pandas().equals(generate(tiny_config(), 200, buffer_size=50, artifact_path=tmp_path).load())
