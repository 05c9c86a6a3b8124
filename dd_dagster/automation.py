"""Partition registration (a sensor) and an optional schedule that refreshes stale or missing row groups."""

# No `from __future__ import annotations`: Dagster inspects these functions' signatures.
import dagster as dg
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from dd_dagster.checkpoints import latest_records
from dd_dagster.dataset import DagsterDataset

#: Keys per add request: SQLite has been seen to fail near 36k keys in one call.
ADD_BATCH = 10_000


def missing_partition_keys(instance: dg.DagsterInstance, dataset: DagsterDataset) -> list[str]:
    existing = set(instance.get_dynamic_partitions(dataset.partitions_def.name))
    return [key for key in dataset.partition_keys if key not in existing]


def register_partitions(instance: dg.DagsterInstance, dataset: DagsterDataset) -> int:
    """Add the row groups' partition keys directly (for schedules and scripts); returns how many."""
    missing = missing_partition_keys(instance, dataset)
    for start in range(0, len(missing), ADD_BATCH):
        instance.add_dynamic_partitions(dataset.partitions_def.name, missing[start : start + ADD_BATCH])
    return len(missing)


def build_registration_sensor(dataset: DagsterDataset) -> dg.SensorDefinition:
    @dg.sensor(
        name=f"{dataset.name}_register_row_groups",
        minimum_interval_seconds=30,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=f"Registers the {len(dataset.sizes)} row-group partitions of {dataset.name} (and new ones when num_records grows).",
    )
    def register(context: dg.SensorEvaluationContext):
        missing = missing_partition_keys(context.instance, dataset)
        if not missing:
            return dg.SkipReason(f"all {len(dataset.sizes)} row groups are registered")
        requests = [dataset.partitions_def.build_add_request(missing[i : i + ADD_BATCH]) for i in range(0, len(missing), ADD_BATCH)]
        return dg.SensorResult(dynamic_partitions_requests=requests)

    return register


def stale_or_missing(instance: dg.DagsterInstance, dataset: DagsterDataset, row_groups_key: dg.AssetKey) -> list[int]:
    records = latest_records(instance, row_groups_key, dataset.partition_keys)
    todo = []
    for index, key in enumerate(dataset.partition_keys):
        cp = records[key].checkpoint if key in records else None
        if cp is None or (cp.config_hash, cp.requested_rows, cp.buffer_size) != (dataset.config_hash, dataset.sizes[index], dataset.buffer_size):
            todo.append(index)
    return todo


def contiguous_chunks(indices: list[int], size: int) -> list[tuple[int, int]]:
    """[0,1,2,5,6] with size 2 -> [(0,1), (2,2), (5,6)]: one run per range of at most ``size``."""
    chunks: list[tuple[int, int]] = []
    for i in indices:
        if chunks and chunks[-1][1] == i - 1 and i - chunks[-1][0] < size:
            chunks[-1] = (chunks[-1][0], i)
        else:
            chunks.append((i, i))
    return chunks


def build_refresh_schedule(dataset: DagsterDataset, job, row_groups_key: dg.AssetKey, cron: str, row_groups_per_run: int) -> dg.ScheduleDefinition:
    @dg.schedule(name=f"{dataset.name}_refresh", cron_schedule=cron, job=job, description=f"Requests the row groups of {dataset.name} that are missing or made under another config.")
    def refresh(context: dg.ScheduleEvaluationContext):
        register_partitions(context.instance, dataset)  # schedules cannot return partition requests
        todo = stale_or_missing(context.instance, dataset, row_groups_key)
        if not todo:
            return dg.SkipReason(f"all {len(dataset.sizes)} row groups are current")
        return [
            dg.RunRequest(
                run_key=f"{dataset.config_hash}:{start}-{end}:{context.scheduled_execution_time}",
                tags={ASSET_PARTITION_RANGE_START_TAG: dataset.partition_key(start), ASSET_PARTITION_RANGE_END_TAG: dataset.partition_key(end)},
            )
            for start, end in contiguous_chunks(todo, row_groups_per_run)
        ]

    return refresh
