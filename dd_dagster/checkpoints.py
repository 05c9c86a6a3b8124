"""Dagster's materializations as resume checkpoints, read in one batched query.

``get_latest_storage_id_by_partition`` then ``fetch_materializations`` by storage ids (at
most 10,000 per call): ~0.3 s for 10,000 partitions on SQLite, against ~94 s one by one.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import dagster as dg
from dagster._core.events import DagsterEventType

from dd_core import Checkpoint, Found, FoundState, StoragePath, storage_path

FETCH_LIMIT = 10_000
DATA_VERSION_TAG = "dagster/data_version"
CODE_VERSION_TAG = "dagster/code_version"


@dataclass(frozen=True)
class RowGroupRecord:
    """What the latest materialization of one row group says."""

    partition_key: str
    checkpoint: Checkpoint
    path: StoragePath
    num_rows: int
    data_version: str | None
    storage_id: int


def _value(metadata: dict, name: str, default=None):
    entry = metadata.get(name)
    return default if entry is None else entry.value


def latest_records(instance: dg.DagsterInstance, asset_key: dg.AssetKey, partition_keys: Iterable[str]) -> dict[str, RowGroupRecord]:
    """Latest materialization per partition; partitions without one (or not ours) are absent."""
    wanted = set(partition_keys)
    if not wanted:
        return {}
    ids = instance.get_latest_storage_id_by_partition(asset_key, DagsterEventType.ASSET_MATERIALIZATION, partitions=wanted)
    storage_ids = sorted(ids.values())
    records: dict[str, RowGroupRecord] = {}
    for start in range(0, len(storage_ids), FETCH_LIMIT):
        chunk = storage_ids[start : start + FETCH_LIMIT]
        result = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=asset_key, storage_ids=chunk), limit=len(chunk))
        for record in result.records:
            parsed = _parse(record)
            if parsed is not None:
                records[parsed.partition_key] = parsed
    return records


def _parse(record) -> RowGroupRecord | None:
    materialization = record.asset_materialization
    meta = materialization.metadata
    try:
        checkpoint = Checkpoint(
            config_hash=str(_value(meta, "config_hash")),
            requested_rows=int(_value(meta, "requested_rows")),
            buffer_size=int(_value(meta, "buffer_size")),
        )
        path = storage_path(str(_value(meta, "path")))
        num_rows = int(_value(meta, "num_rows"))
    except (TypeError, ValueError):
        return None  # a materialization not written by dd (e.g. reported by hand): not a checkpoint
    return RowGroupRecord(record.partition_key, checkpoint, path, num_rows, (materialization.tags or {}).get(DATA_VERSION_TAG), record.storage_id)


def found_state(instance: dg.DagsterInstance, asset_key: dg.AssetKey, records: dict[str, RowGroupRecord], index_of) -> FoundState:
    """The records of one run's row groups as the state the resume planner reads."""
    checkpoints = {index_of(key): rec.checkpoint for key, rec in records.items()}
    anything = bool(checkpoints) or bool(instance.get_materialized_partitions(asset_key))
    return FoundState(Found.DATASET if anything else Found.NOTHING, checkpoints=checkpoints)
