"""Shared by the Dagster tests: tiny configs and ways to run row-group ranges in process."""

from __future__ import annotations

import dagster as dg
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from dd_dagster import DataDesignerResource, build_dataset_definitions

QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def tiny_config(high: int = 100) -> dict:
    """A fast config; changing ``high`` changes the fingerprint (a new version of the dataset)."""
    return {
        "name": "tiny",
        "columns": [
            {"name": "kind", "type": "category", "values": ["a", "b", "c"]},
            {"name": "value", "type": "uniform", "low": 0, "high": high, "dtype": "int"},
            {"name": "label", "type": "expression", "expr": "{{ kind }}-{{ value }}"},
        ],
    }


def tiny_defs(artifact_path, high: int = 100, num_records: int = 200, buffer_size: int = 50, **kwargs) -> dg.Definitions:
    resource = DataDesignerResource(artifact_path=str(artifact_path))
    return build_dataset_definitions(tiny_config(high), num_records=num_records, buffer_size=buffer_size, resource=resource, **kwargs)


def run_range(defs: dg.Definitions, instance, start: int, end: int, mode: str = "if_possible", name: str = "tiny", raise_on_error: bool = True):
    job = defs.resolve_job_def(f"{name}_row_groups_job")
    tags = {ASSET_PARTITION_RANGE_START_TAG: f"{start:05d}", ASSET_PARTITION_RANGE_END_TAG: f"{end:05d}"}
    run_config = {**QUIET, "ops": {f"{name}_row_groups": {"config": {"resume": mode}}}}
    return job.execute_in_process(instance=instance, tags=tags, run_config=run_config, raise_on_error=raise_on_error)


def outcome(result) -> dict[int, str]:
    """Row group -> "generated" or "reused", from the run's materializations."""
    return {
        int(e.partition): "reused" if e.materialization.metadata["reused"].value else "generated"
        for e in result.get_asset_materialization_events()
    }


def materialize_dataset(defs: dg.Definitions, instance, name: str = "tiny"):
    return dg.materialize([defs.resolve_assets_def(dg.AssetKey([name]))], instance=instance, run_config=QUIET, raise_on_error=False)
