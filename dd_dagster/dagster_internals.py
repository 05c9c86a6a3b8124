"""What dd_dagster needs from Dagster 1.13 that Dagster offers no public API for, in one place.

- A range run's tags. Dagster reads a single run's partition range from these two tags (the UI's
  single-run backfills and ``dagster job launch --tags`` set them); no public constant,
  ``RunRequest`` field or ``execute_in_process`` argument names a range.
- The latest ``dagster/data_version`` tag of every partition in one indexed query,
  ``EventLogStorage.get_latest_tags_by_partition``: ~60 ms for 10,000 partitions on SQLite,
  against ~3 s through the public materialization records.

``tests/dagster/test_dagster_internals.py`` fails when a Dagster upgrade renames or changes either.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import dagster as dg

ASSET_PARTITION_RANGE_START_TAG = "dagster/asset_partition_range_start"
ASSET_PARTITION_RANGE_END_TAG = "dagster/asset_partition_range_end"


def range_tags(first_key: str, last_key: str) -> dict[str, str]:
    """Tags that make a run of a partitioned job cover the keys ``first_key..last_key``."""
    return {ASSET_PARTITION_RANGE_START_TAG: first_key, ASSET_PARTITION_RANGE_END_TAG: last_key}


def latest_tags_by_partition(
    instance: dg.DagsterInstance, asset_key: dg.AssetKey, tag_keys: Iterable[str]
) -> Mapping[str, Mapping[str, str]]:
    """Partition key -> the given tags of its latest materialization (only tags Dagster indexes
    per partition, such as ``dagster/data_version``)."""
    return instance.event_log_storage.get_latest_tags_by_partition(
        asset_key, dg.DagsterEventType.ASSET_MATERIALIZATION, list(tag_keys)
    )
