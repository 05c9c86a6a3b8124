"""Sensors and a schedule around the row-group asset:

- ``<name>_register_row_groups`` (running by default): registers the partition keys of every
  row group (and new ones when ``num_records`` grows); reports stray keys, deletes nothing.
- ``<name>_regenerate_stale`` (stopped by default: turn it on in the UI): requests exactly the
  stale and missing row groups, in contiguous ranges of ``row_groups_per_run``, one round at a
  time. A range is requested once per config fingerprint, so a row group that keeps failing is
  not retried in a loop (re-execute its run, or launch the job, once the cause is fixed).
- ``<name>_refresh`` (with ``refresh_cron``): the same requests on a schedule.
"""

# No `from __future__ import annotations`: Dagster inspects these functions' signatures.
import dagster as dg

from dd_dagster.dagster_internals import range_tags
from dd_dagster.dataset import DagsterDataset
from dd_dagster.status import SHOWN_KEYS, RowGroupStatus

#: Keys per add request: SQLite has been seen to fail near 36k keys in one call.
ADD_BATCH = 10_000
#: Tag on the runs the regeneration sensor requests: ``dd/regenerate=<dataset name>``.
REGENERATE_TAG = "dd/regenerate"
#: Runs not finished yet, queued ones included.
UNFINISHED = [
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]


def missing_partition_keys(instance: dg.DagsterInstance, dataset: DagsterDataset) -> list[str]:
    existing = set(instance.get_dynamic_partitions(dataset.partitions_def.name))
    return [key for key in dataset.partition_keys if key not in existing]


def register_partitions(instance: dg.DagsterInstance, dataset: DagsterDataset) -> int:
    """Add the row groups' partition keys directly (for schedules and scripts); returns how many."""
    missing = missing_partition_keys(instance, dataset)
    for start in range(0, len(missing), ADD_BATCH):
        instance.add_dynamic_partitions(dataset.partitions_def.name, missing[start : start + ADD_BATCH])
    return len(missing)


def stray_partition_keys(instance: dg.DagsterInstance, dataset: DagsterDataset) -> list[str]:
    return dataset.invalid_keys(instance.get_dynamic_partitions(dataset.partitions_def.name))


def build_registration_sensor(dataset: DagsterDataset) -> dg.SensorDefinition:
    @dg.sensor(
        name=f"{dataset.name}_register_row_groups",
        minimum_interval_seconds=30,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=f"Registers the {dataset.num_row_groups} row-group partitions of {dataset.name} ({dataset.key_range}), and new ones when num_records grows.",
    )
    def register(context: dg.SensorEvaluationContext):
        stray = stray_partition_keys(context.instance, dataset)
        if stray:
            shown = ", ".join(stray[:SHOWN_KEYS])
            context.log.warning(
                f"{len(stray)} registered key(s) name no row group of {dataset.name} (valid: {dataset.key_range}): {shown}; delete them in the UI"
            )
        missing = missing_partition_keys(context.instance, dataset)
        if not missing:
            extra = (
                f"; {len(stray)} stray key(s) outside {dataset.key_range}: {', '.join(stray[:SHOWN_KEYS])}"
                if stray
                else ""
            )
            return dg.SkipReason(f"all {dataset.num_row_groups} row groups are registered{extra}")
        requests = [
            dataset.partitions_def.build_add_request(missing[i : i + ADD_BATCH])
            for i in range(0, len(missing), ADD_BATCH)
        ]
        return dg.SensorResult(dynamic_partitions_requests=requests)

    return register


def contiguous_chunks(indices: list[int], size: int) -> list[tuple[int, int]]:
    """[0,1,2,5,6] with size 2 -> [(0,1), (2,2), (5,6)]: one run per range of at most ``size``."""
    chunks: list[tuple[int, int]] = []
    for i in indices:
        if chunks and chunks[-1][1] == i - 1 and i - chunks[-1][0] < size:
            chunks[-1] = (chunks[-1][0], i)
        else:
            chunks.append((i, i))
    return chunks


def regeneration_requests(
    status: RowGroupStatus, row_groups_per_run: int, run_key_suffix: str = ""
) -> list[dg.RunRequest]:
    """One run per contiguous range of stale or missing row groups."""
    ds = status.dataset
    return [
        dg.RunRequest(
            run_key=f"{ds.config_hash}:{start}-{end}{run_key_suffix}",
            tags={**range_tags(ds.partition_key(start), ds.partition_key(end)), REGENERATE_TAG: ds.name},
        )
        for start, end in contiguous_chunks(status.to_regenerate, row_groups_per_run)
    ]


def build_regeneration_sensor(
    dataset: DagsterDataset, job_name: str, row_groups_key: dg.AssetKey, row_groups_per_run: int
) -> dg.SensorDefinition:
    @dg.sensor(
        name=f"{dataset.name}_regenerate_stale",
        job_name=job_name,
        minimum_interval_seconds=30,
        default_status=dg.DefaultSensorStatus.STOPPED,
        description=(
            f"Regenerates exactly the stale and missing row groups of {dataset.name} (in runs of up to {row_groups_per_run}), "
            "e.g. after a config change. Waits while its earlier runs are in progress."
        ),
    )
    def regenerate(context: dg.SensorEvaluationContext):
        in_progress = context.instance.get_run_records(
            dg.RunsFilter(tags={REGENERATE_TAG: dataset.name}, statuses=UNFINISHED), limit=1
        )
        if in_progress:
            return dg.SkipReason(f"waiting for run {in_progress[0].dagster_run.run_id} to finish")
        status = RowGroupStatus.read(context.instance, dataset, row_groups_key)
        if not status.to_regenerate:
            return dg.SkipReason(status.summary())
        return regeneration_requests(status, row_groups_per_run)

    return regenerate


def build_refresh_schedule(
    dataset: DagsterDataset, job_name: str, row_groups_key: dg.AssetKey, cron: str, row_groups_per_run: int
) -> dg.ScheduleDefinition:
    @dg.schedule(
        name=f"{dataset.name}_refresh",
        cron_schedule=cron,
        job_name=job_name,
        description=f"Requests the row groups of {dataset.name} that are missing or made under another config.",
    )
    def refresh(context: dg.ScheduleEvaluationContext):
        register_partitions(context.instance, dataset)  # schedules cannot return partition requests
        status = RowGroupStatus.read(context.instance, dataset, row_groups_key)
        if not status.to_regenerate:
            return dg.SkipReason(status.summary())
        return regeneration_requests(status, row_groups_per_run, f":{context.scheduled_execution_time}")

    return refresh
