"""What dd_dagster takes from Dagster without a public API (``dd_dagster.dagster_internals``)
still means what dd relies on: these fail on a Dagster upgrade that renames or changes it."""

from __future__ import annotations

import dagster as dg
from dagster._core.storage import tags as dagster_tags

from dd_dagster.dagster_internals import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
    latest_tags_by_partition,
)
from tests.dagster.helpers import outcome, run_range, tiny_defs

ROW_GROUPS = dg.AssetKey(["tiny_row_groups"])


def test_the_range_tags_are_the_ones_dagster_reads():
    assert ASSET_PARTITION_RANGE_START_TAG == dagster_tags.ASSET_PARTITION_RANGE_START_TAG
    assert ASSET_PARTITION_RANGE_END_TAG == dagster_tags.ASSET_PARTITION_RANGE_END_TAG


def test_a_run_with_range_tags_covers_exactly_that_range(tmp_path, tiny_registered):
    """run_range launches the row-group job with ``range_tags``: Dagster hands the asset those keys."""
    assert outcome(run_range(tiny_defs(tmp_path), tiny_registered, 1, 2)) == {1: "generated", 2: "generated"}
    assert tiny_registered.get_materialized_partitions(ROW_GROUPS) == {"00001", "00002"}


def test_latest_tags_by_partition_gives_each_partitions_latest_data_version(tmp_path, tiny_registered):
    defs = tiny_defs(tmp_path)
    run_range(defs, tiny_registered, 0, 1)
    first = latest_tags_by_partition(tiny_registered, ROW_GROUPS, ["dagster/data_version"])
    tiny_registered.report_runless_asset_event(
        dg.AssetMaterialization(ROW_GROUPS, partition="00001", tags={"dagster/data_version": "later"})
    )
    latest = latest_tags_by_partition(tiny_registered, ROW_GROUPS, ["dagster/data_version"])
    assert sorted(latest) == ["00000", "00001"]
    assert latest["00000"] == first["00000"] and latest["00000"]["dagster/data_version"].startswith("dd1.sha256.")
    assert latest["00001"] == {"dagster/data_version": "later"}
