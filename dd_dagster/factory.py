"""``build_dataset_definitions``: a dataset config as Dagster definitions."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from dd_core import DatasetConfig
from dd_dagster.automation import build_refresh_schedule, build_regeneration_sensor, build_registration_sensor
from dd_dagster.checks import build_current_check
from dd_dagster.dataset import DagsterDataset
from dd_dagster.dataset_asset import HubTarget, build_dataset_asset
from dd_dagster.dataset_io import DATASET_IO_MANAGER_KEY, dataset_io_manager
from dd_dagster.resource import DataDesignerResource
from dd_dagster.row_groups import build_row_groups_asset
from dd_dagster.translator import DatasetAssetProps, DDDatasetTranslator

#: Run tag naming the model server, for the run queue's per-endpoint tag limits.
LLM_ENDPOINT_TAG = "dd/llm_endpoint"


def build_dataset_definitions(
    config: DatasetConfig | dict | str | Path,
    *,
    num_records: int,
    buffer_size: int = 1000,
    dataset_name: str | None = None,
    row_groups_per_run: int = 10,
    refresh_cron: str | None = None,
    translator: DDDatasetTranslator | None = None,
    resource: DataDesignerResource | None = None,
    resource_key: str = "data_designer",
    hub: HubTarget | None = None,
) -> dg.Definitions:
    """Definitions for one dataset: the row-group asset (a dynamic partition per row group) with
    its ``row_groups_current`` check, the combined dataset asset with a blocking row-count check,
    a job, a partition-registering sensor, a regeneration sensor for stale or missing row groups
    (stopped until turned on), and (with ``refresh_cron``) a schedule doing the same.

    Several datasets share one code location through ``dg.Definitions.merge``; they expect a
    ``DataDesignerResource`` under ``resource_key`` (pass ``resource`` once, or add it).
    Datasets with LLM columns hold the concurrency pool of their model server, and their job's
    runs carry the ``dd/llm_endpoint`` tag (pass ``resource`` so endpoint overrides count).
    The definitions set the in-process executor, which backfill runs of the code location use.
    With ``hub`` (``HubTarget("org/name")``), each materialization of the combined dataset whose
    row count checks out is also pushed to that Hugging Face Hub repo, with its dataset card.
    """
    if row_groups_per_run < 1:
        raise ValueError(f"row_groups_per_run must be at least 1, got {row_groups_per_run}")
    dataset = DagsterDataset.create(config, num_records, buffer_size, dataset_name)
    translator = translator or DDDatasetTranslator()
    row_groups_spec = translator.get_asset_spec(DatasetAssetProps(dataset, "row_groups"))
    endpoint = dataset.llm_endpoint({alias: m.base_url for alias, m in resource.models.items()} if resource else None)
    row_groups = build_row_groups_asset(dataset, row_groups_spec, row_groups_per_run, endpoint, resource_key)
    # Downstream assets receive the dataset through its I/O manager (see ``dataset_io``).
    dataset_spec = translator.get_asset_spec(DatasetAssetProps(dataset, "dataset"))
    combined = build_dataset_asset(
        dataset, dataset_spec.with_io_manager_key(DATASET_IO_MANAGER_KEY), row_groups_spec.key, resource_key, hub
    )
    job = dg.define_asset_job(
        f"{dataset.name}_row_groups_job",
        # Without the check's own step: every run of the asset evaluates it when it ends.
        selection=dg.AssetSelection.assets(row_groups_spec.key).without_checks(),
        executor_def=dg.in_process_executor,
        description=f"Generates row groups of {dataset.name}; launch it over a partition range.",
        tags={LLM_ENDPOINT_TAG: endpoint} if endpoint else None,
    )
    schedules = (
        [build_refresh_schedule(dataset, job.name, row_groups_spec.key, refresh_cron, row_groups_per_run)]
        if refresh_cron
        else []
    )
    return dg.Definitions(
        assets=[row_groups, combined],
        asset_checks=[build_current_check(dataset, row_groups_spec.key)],
        jobs=[job],
        sensors=[
            build_registration_sensor(dataset),
            build_regeneration_sensor(dataset, job.name, row_groups_spec.key, row_groups_per_run),
        ],
        schedules=schedules,
        resources={DATASET_IO_MANAGER_KEY: dataset_io_manager, **({resource_key: resource} if resource else {})},
        # Backfills run the implicit asset job, which takes the code location's executor:
        # in-process, so a run is one process (no step subprocess per run).
        executor=dg.in_process_executor,
    )
