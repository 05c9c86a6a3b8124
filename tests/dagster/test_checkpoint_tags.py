"""dd's checkpoint read agrees with Dagster's materialized view when the tag index lags the
event log (issue 11, point 5). The state is made here by deleting tag rows in SQLite; the
PostgreSQL test (tests/e2e/test_postgres_crash_window.py) makes it by killing a run worker."""

from __future__ import annotations

import dagster as dg
import sqlalchemy as sa
from dagster import DagsterEventType

from dd_dagster.checkpoints import latest_records
from tests.dagster.helpers import materialize_dataset, outcome, run_range, tiny_defs

ROW_GROUPS = dg.AssetKey(["tiny_row_groups"])
KEYS = ["00000", "00001", "00002", "00003"]


def drop_tag_rows(instance: dg.DagsterInstance, partitions: list[str]) -> None:
    """Remove the tag-index rows of the partitions' latest materializations, as a run killed
    between dagster-postgres' two transactions leaves them."""
    ids = instance.get_latest_storage_id_by_partition(
        ROW_GROUPS, DagsterEventType.ASSET_MATERIALIZATION, partitions=set(partitions)
    )
    with instance.event_log_storage.index_connection() as conn:
        conn.execute(sa.text(f"DELETE FROM asset_event_tags WHERE event_id IN ({', '.join(map(str, ids.values()))})"))


def test_partitions_without_tag_rows_are_read_from_their_records(tmp_path, tiny_registered):
    defs = tiny_defs(tmp_path)
    run_range(defs, tiny_registered, 0, 3)
    before = latest_records(tiny_registered, ROW_GROUPS, KEYS)
    drop_tag_rows(tiny_registered, ["00001", "00003"])
    tags = tiny_registered.event_log_storage.get_latest_tags_by_partition(
        ROW_GROUPS, DagsterEventType.ASSET_MATERIALIZATION, ["dagster/data_version"]
    )
    assert sorted(tags) == ["00000", "00002"]  # what the tag index alone shows
    assert tiny_registered.get_materialized_partitions(ROW_GROUPS) == set(KEYS)  # what Dagster shows

    assert latest_records(tiny_registered, ROW_GROUPS, KEYS) == before
    assert outcome(run_range(defs, tiny_registered, 0, 3)) == dict.fromkeys(range(4), "reused")
    combined = materialize_dataset(defs, tiny_registered)
    assert (
        combined.success
        and combined.get_asset_materialization_events()[0].materialization.metadata["dagster/row_count"].value == 200
    )


def test_a_materialization_dd_did_not_write_is_not_a_checkpoint(tmp_path, tiny_registered):
    """E.g. "Report materialization" in the UI: Dagster counts the partition, dd regenerates it."""
    defs = tiny_defs(tmp_path)
    run_range(defs, tiny_registered, 0, 2)
    tiny_registered.report_runless_asset_event(dg.AssetMaterialization(ROW_GROUPS, partition="00003"))
    drop_tag_rows(tiny_registered, ["00003"])  # and without any tag row either
    assert sorted(latest_records(tiny_registered, ROW_GROUPS, KEYS)) == KEYS[:3]
    assert not materialize_dataset(defs, tiny_registered).success
    assert outcome(run_range(defs, tiny_registered, 0, 3)) == {0: "reused", 1: "reused", 2: "reused", 3: "generated"}
