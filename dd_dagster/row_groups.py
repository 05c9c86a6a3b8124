"""The row-group asset: one dynamic partition per row group, resumed from Dagster's records.

A run may cover many row groups (``context.partition_keys``). Their checkpoints are read in one
batched query and dd_core's pure resume planner decides per row group. Every row group is
reported as its own materialization the moment it is written (or verified and reused), with
code- and data-version tags so Dagster can tell stale partitions apart.
"""

# No `from __future__ import annotations`: Dagster reads the asset function's annotations
# (config, resources) at definition time.
import hashlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import dagster as dg

from dd_core import (
    DatasetDamagedError,
    DDConfigError,
    GenerationError,
    ResumeConflictError,
    ResumeMode,
    RowGroupInfo,
    StaleRowGroupError,
    plan_resume,
    read_info,
    row_group_claim,
    run_row_group,
    write_row_group_file,
)
from dd_dagster.checkpoints import CODE_VERSION_TAG, DATA_VERSION_TAG, found_state, latest_records
from dd_dagster.dataset import DagsterDataset
from dd_dagster.resource import DataDesignerResource


class RowGroupsConfig(dg.Config):
    """Run config of the row-group asset, chosen per launch in the launchpad."""

    resume: Literal["never", "always", "if_possible"] = "if_possible"


def build_row_groups_asset(dataset: DagsterDataset, spec: dg.AssetSpec, row_groups_per_run: int) -> dg.AssetsDefinition:
    spec = spec.replace_attributes(code_version=dataset.config_hash, skippable=True)

    @dg.multi_asset(
        name=f"{dataset.name}_row_groups",
        specs=[spec],
        partitions_def=dataset.partitions_def,
        backfill_policy=dg.BackfillPolicy.multi_run(max_partitions_per_run=row_groups_per_run),
    )
    def row_groups(context: dg.AssetExecutionContext, config: RowGroupsConfig, data_designer: DataDesignerResource):
        yield from RowGroupMaterializer(dataset, data_designer, context).run(context.partition_keys, ResumeMode(config.resume))

    return row_groups


class RowGroupMaterializer:
    def __init__(self, dataset: DagsterDataset, resource: DataDesignerResource, context: dg.AssetExecutionContext):
        self.dataset = dataset
        self.artifact_path = resource.artifact_path
        self.runtime = resource.llm_runtime(dataset.llm_cache_dir(resource.artifact_path))
        self.context = context
        self.asset_key = context.asset_key

    def run(self, partition_keys: list[str], mode: ResumeMode) -> Iterator[dg.AssetMaterialization]:
        ds = self.dataset
        indices = sorted(ds.index(k) for k in partition_keys)
        records = latest_records(self.context.instance, self.asset_key, partition_keys)
        found = found_state(self.context.instance, self.asset_key, records, ds.index)
        plan = self._plan(mode, found, indices)
        self.context.log.info(f"{len(plan.reuse)} row group(s) to reuse, {len(plan.generate)} to generate (resume={mode.value})")
        for index in indices:
            record = records.get(ds.partition_key(index))
            if index in plan.reuse and self._intact(record.path, index):
                yield self._materialization(index, record.path, record.num_rows, record.data_version, reused=True)
                continue
            if index in plan.reuse:
                self.context.log.warning(f"row group {index}: {record.path} is missing or damaged; regenerating it")
            yield self._generate(index, mode)

    def _plan(self, mode, found, indices):
        ds = self.dataset
        location = f"asset {self.asset_key.to_user_string()}"
        try:
            return plan_resume(mode, found, ds.config_hash, ds.num_records, ds.buffer_size, location=location, scope="asset", row_groups=indices)
        except StaleRowGroupError as exc:
            metadata = {"row_group": exc.row_group, "stored_config_hash": exc.stored_hash, "current_config_hash": exc.current_hash}
            raise dg.Failure(description=str(exc), metadata=metadata, allow_retries=False) from exc
        except (ResumeConflictError, DDConfigError) as exc:
            raise dg.Failure(description=str(exc), metadata={"current_config_hash": ds.config_hash}, allow_retries=False) from exc

    def _intact(self, path: Path, index: int) -> bool:
        """The file exists and says it is this row group of the current config and size."""
        ds = self.dataset
        try:
            info = read_info(path)
        except (DatasetDamagedError, FileNotFoundError):
            return False
        return (info.row_group, info.config_hash, info.requested_rows, info.buffer_size) == (index, ds.config_hash, ds.sizes[index], ds.buffer_size)

    def _generate(self, index: int, mode: ResumeMode) -> dg.AssetMaterialization:
        ds = self.dataset
        path = ds.row_group_path(self.artifact_path, index)
        # Parallel runs may target the same row group: one generates, the other waits and reuses.
        with row_group_claim(ds.claim_path(self.artifact_path, index)):
            if mode is not ResumeMode.NEVER and self._intact(path, index):
                self.context.log.info(f"row group {index}: found finished at {path} (not yet recorded); reusing it")
                return self._materialization(index, path, read_info(path).num_rows, _file_version(path), reused=True)
            started = time.perf_counter()
            try:
                result = run_row_group(ds.config, index, ds.sizes[index], buffer_size=ds.buffer_size, llm=self.runtime)
            except GenerationError as exc:
                raise dg.Failure(description=str(exc), metadata={"row_group": index}) from exc
            info = RowGroupInfo(index, ds.sizes[index], result.table.num_rows, ds.config_hash, ds.fingerprint["config_hash_version"], ds.buffer_size, ds.config.seed)
            digest = write_row_group_file(path, result.table, info)
            seconds = time.perf_counter() - started
        self.context.log.info(f"row group {index}: generated {result.table.num_rows} rows in {seconds:.2f} s")
        extra = {"duration_s": round(seconds, 3), "dropped_rows": result.dropped_rows}
        if result.usage:
            extra["llm_usage"] = dg.MetadataValue.json({alias: usage.to_json() for alias, usage in result.usage.items()})
        return self._materialization(index, path, result.table.num_rows, digest[:16], reused=False, extra=extra)

    def _materialization(self, index: int, path: Path, num_rows: int, data_version: str | None, *, reused: bool, extra: dict | None = None) -> dg.AssetMaterialization:
        ds = self.dataset
        metadata = {
            "config_hash": ds.config_hash,
            "config_hash_version": ds.fingerprint["config_hash_version"],
            "row_group": index,
            "num_rows": num_rows,
            "requested_rows": ds.sizes[index],
            "buffer_size": ds.buffer_size,
            "seed": ds.config.seed,
            "path": dg.MetadataValue.path(str(path)),
            "reused": reused,
            "dagster/row_count": num_rows,
            **(extra or {}),
        }
        tags = {CODE_VERSION_TAG: ds.config_hash, DATA_VERSION_TAG: data_version or _file_version(path)}
        return dg.AssetMaterialization(asset_key=self.asset_key, partition=ds.partition_key(index), metadata=metadata, tags=tags)


def _file_version(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]

