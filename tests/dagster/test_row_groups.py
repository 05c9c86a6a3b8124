"""The row-group asset on a real (temporary SQLite) Dagster instance."""

from __future__ import annotations

import datetime
import hashlib
import os

import dagster as dg
import pyarrow.parquet as pq
import pytest
from dagster._core.definitions.data_version import CachingStaleStatusResolver, StaleStatus
from dagster._core.loader import LoadingContextForTest

from dd_core import fingerprint, generate, load_config
from dd_dagster import DagsterDataset, register_partitions
from tests.dagster.helpers import materialize_dataset, outcome, run_range, tiny_config, tiny_defs

ROW_GROUPS = dg.AssetKey(["tiny_row_groups"])


def _hash(high: int = 100) -> str:
    return fingerprint(load_config(tiny_config(high)))["config_hash"]


def test_single_partition_run_records_a_full_checkpoint(tmp_path, tiny_registered):
    defs = tiny_defs(tmp_path)
    result = defs.resolve_job_def("tiny_row_groups_job").execute_in_process(
        instance=tiny_registered, partition_key="00002"
    )
    [event] = result.get_asset_materialization_events()
    meta = {k: v.value for k, v in event.materialization.metadata.items()}
    assert event.partition == "00002"
    assert meta["config_hash"] == _hash() and meta["config_hash_version"] == "1"
    assert (meta["row_group"], meta["num_rows"], meta["seed"], meta["dropped_rows"]) == ("00002", 50, "42", 0)
    assert meta["dagster/row_count"] == 50 and meta["duration_s"] > 0 and meta["reused"] is False
    # Constants are definition metadata, not repeated (and plotted) per partition.
    assert not {"requested_rows", "buffer_size"} & set(meta)
    numeric = {
        k
        for k, v in event.materialization.metadata.items()
        if isinstance(v.value, (int, float)) and not isinstance(v.value, bool)
    }
    assert numeric == {"num_rows", "dagster/row_count", "dropped_rows", "duration_s"}
    assert pq.read_table(meta["path"]).num_rows == 50 and _hash()[7:23] in meta["path"]
    tags = event.materialization.tags
    assert tags["dagster/code_version"] == _hash()
    digest = hashlib.sha256(open(meta["path"], "rb").read()).hexdigest()[:16]
    # The checkpoint, then the content.
    assert tags["dagster/data_version"] == f"dd1.{_hash().replace(':', '.')}.50.50.50.{digest}"


def test_range_run_reports_each_row_group_as_its_own_materialization(tmp_path, tiny_registered):
    result = run_range(tiny_defs(tmp_path), tiny_registered, 0, 3)
    events = sorted(result.get_asset_materialization_events(), key=lambda e: e.partition)  # reported as each is written
    assert [e.partition for e in events] == ["00000", "00001", "00002", "00003"]
    assert [e.materialization.metadata["row_group"].value for e in events] == ["00000", "00001", "00002", "00003"]
    assert len({e.materialization.metadata["path"].value for e in events}) == 4
    assert len({e.materialization.tags["dagster/data_version"] for e in events}) == 4


def _state(tmp_path, instance) -> dict:
    """Row groups of the tiny dataset (target 200, 4 x 50) in four states under config v2:
    0 missing, 1 current, 2 stale (made under v1), 3 current but its file is damaged."""
    v1, v2 = tiny_defs(tmp_path, high=100), tiny_defs(tmp_path, high=50)
    run_range(v1, instance, 2, 2)
    run_range(v2, instance, 1, 1)
    damaged = run_range(v2, instance, 3, 3).get_asset_materialization_events()[0].materialization.metadata["path"].value
    with open(damaged, "r+b") as fh:
        fh.truncate(100)
    stale_file = DagsterDataset.create(tiny_config(100), 200, 50).row_group_path(tmp_path, 2)
    return {"v2": v2, "stale_file": stale_file, "stale_bytes": stale_file.read_bytes()}


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("never", {0: "generated", 1: "generated", 2: "generated", 3: "generated"}),
        ("if_possible", {0: "generated", 1: "reused", 2: "generated", 3: "generated"}),
    ],
)
def test_modes_against_missing_current_stale_and_damaged_row_groups(tmp_path, tiny_registered, mode, expected):
    state = _state(tmp_path, tiny_registered)
    result = run_range(state["v2"], tiny_registered, 0, 3, mode)
    assert outcome(result) == expected
    assert state["stale_file"].read_bytes() == state["stale_bytes"]  # the older version's file is untouched
    records = {e.partition: e.materialization for e in result.get_asset_materialization_events()}
    assert pq.read_table(records["00003"].metadata["path"].value).num_rows == 50  # repaired


def test_always_fails_on_a_stale_row_group_with_both_hashes(tmp_path, tiny_registered):
    state = _state(tmp_path, tiny_registered)
    result = run_range(state["v2"], tiny_registered, 0, 3, "always", raise_on_error=False)
    assert not result.success and outcome(result) == {}
    failure = result.get_step_failure_events()[0].step_failure_data.user_failure_data
    assert failure.metadata["stored_config_hash"].value == _hash(100)
    assert failure.metadata["current_config_hash"].value == _hash(50)
    assert failure.metadata["row_group"].value == 2
    assert "Resume mode 'always' never regenerates" in failure.description


def test_always_resumes_missing_and_damaged_but_needs_something_to_resume(tmp_path, tiny_registered):
    fresh = run_range(tiny_defs(tmp_path / "fresh"), tiny_registered, 0, 1, "always", raise_on_error=False)
    assert not fresh.success
    assert (
        "found no materialized row group"
        in fresh.get_step_failure_events()[0].step_failure_data.user_failure_data.description
    )
    state = _state(tmp_path, tiny_registered)
    assert outcome(run_range(state["v2"], tiny_registered, 0, 1, "always")) == {0: "generated", 1: "reused"}
    assert outcome(run_range(state["v2"], tiny_registered, 3, 3, "always")) == {3: "generated"}


def test_materialize_stale_and_missing_after_a_config_change(tmp_path, tiny_registered):
    v1, v2 = tiny_defs(tmp_path, high=100), tiny_defs(tmp_path, high=50)
    first = run_range(v1, tiny_registered, 0, 3)
    old_files = {e.materialization.metadata["path"].value for e in first.get_asset_materialization_events()}
    run_range(v2, tiny_registered, 0, 1)
    resolver = _stale_resolver(tiny_registered, v2)
    statuses = {k: resolver.get_status(ROW_GROUPS, k) for k in ("00000", "00001", "00002", "00003")}
    assert statuses == {
        "00000": StaleStatus.FRESH,
        "00001": StaleStatus.FRESH,
        "00002": StaleStatus.STALE,
        "00003": StaleStatus.STALE,
    }
    again = run_range(v2, tiny_registered, 0, 3)  # the default mode over everything = "stale and missing"
    assert outcome(again) == {0: "reused", 1: "reused", 2: "generated", 3: "generated"}
    assert all(os.path.exists(p) for p in old_files)
    resolver = _stale_resolver(tiny_registered, v2)
    assert all(resolver.get_status(ROW_GROUPS, k) == StaleStatus.FRESH for k in ("00002", "00003"))


def _stale_resolver(instance, defs) -> CachingStaleStatusResolver:
    """What the UI asks when it shows a partition as stale ("has a new code version")."""
    return CachingStaleStatusResolver(instance, defs.resolve_asset_graph(), LoadingContextForTest(instance))


def test_reused_row_group_keeps_its_data_version(tmp_path, tiny_registered):
    defs = tiny_defs(tmp_path)
    first, second = (
        sorted(run_range(defs, tiny_registered, 0, 1).get_asset_materialization_events(), key=lambda e: e.partition)
        for _ in range(2)
    )
    for a, b in zip(first, second):
        assert b.materialization.metadata["reused"].value is True
        assert a.materialization.tags["dagster/data_version"] == b.materialization.tags["dagster/data_version"]
        assert a.materialization.metadata["path"].value == b.materialization.metadata["path"].value


def test_combined_dataset_equals_dd_generate_whatever_the_grouping(tmp_path, tiny_registered):
    defs = tiny_defs(tmp_path)
    for start, end in ((2, 3), (0, 0), (1, 1)):
        run_range(defs, tiny_registered, start, end)
    result = materialize_dataset(defs, tiny_registered)
    meta = result.get_asset_materialization_events()[0].materialization.metadata
    assert meta["dagster/row_count"].value == 200
    assert [c.name for c in meta["dagster/column_schema"].value.columns] == ["kind", "value", "label"]
    assert [r.data["column"] for r in meta["preview"].value.records] == ["kind", "value", "label"]
    combined = pq.read_table(meta["path"].value).to_pandas()
    standalone = generate(tiny_config(), 200, buffer_size=50, artifact_path=tmp_path / "standalone").load()
    assert combined.equals(standalone)


def test_registration_sensor_adds_keys_and_new_ones_when_the_target_grows(tmp_path, instance):
    defs = tiny_defs(tmp_path, num_records=200)
    sensor = defs.resolve_sensor_def("tiny_register_row_groups")
    with dg.build_sensor_context(instance_ref=instance.get_ref(), definitions=defs) as ctx:
        result = sensor.evaluate_tick(ctx)
    [request] = result.dynamic_partitions_requests
    assert list(request.partition_keys) == ["00000", "00001", "00002", "00003"]
    instance.add_dynamic_partitions("tiny_row_groups", list(request.partition_keys))
    with dg.build_sensor_context(instance_ref=instance.get_ref(), definitions=defs) as ctx:
        assert sensor.evaluate_tick(ctx).skip_message.startswith("all 4 row groups")
    grown = tiny_defs(tmp_path, num_records=330)
    with dg.build_sensor_context(instance_ref=instance.get_ref(), definitions=grown) as ctx:
        [request] = grown.resolve_sensor_def("tiny_register_row_groups").evaluate_tick(ctx).dynamic_partitions_requests
    assert list(request.partition_keys) == ["00004", "00005", "00006"]


def test_refresh_schedule_requests_stale_and_missing_ranges(tmp_path, instance):
    v1 = tiny_defs(tmp_path, num_records=500, refresh_cron="0 3 * * *", row_groups_per_run=2)
    register_partitions(instance, DagsterDataset.create(tiny_config(), 500, 50))
    run_range(v1, instance, 0, 4)
    v2 = tiny_defs(tmp_path, high=50, num_records=500, refresh_cron="0 3 * * *", row_groups_per_run=2)
    run_range(v2, instance, 1, 2)
    schedule = v2.resolve_schedule_def("tiny_refresh")
    with dg.build_schedule_context(
        instance=instance,
        repository_def=v2.get_repository_def(),
        scheduled_execution_time=datetime.datetime(2026, 11, 28, 3),
    ) as ctx:
        requests = schedule.evaluate_tick(ctx).run_requests
    ranges = [
        (r.tags["dagster/asset_partition_range_start"], r.tags["dagster/asset_partition_range_end"]) for r in requests
    ]
    assert ranges == [
        ("00000", "00000"),
        ("00003", "00004"),
        ("00005", "00006"),
        ("00007", "00008"),
        ("00009", "00009"),
    ]
    run_range(v2, instance, 0, 9)
    with dg.build_schedule_context(
        instance=instance,
        repository_def=v2.get_repository_def(),
        scheduled_execution_time=datetime.datetime(2026, 11, 28, 3),
    ) as ctx:
        assert "current" in schedule.evaluate_tick(ctx).skip_message


def test_processors_and_seed_files_give_the_same_data_as_dd_generate(tmp_path, instance):
    from dd_dagster import DataDesignerResource, build_dataset_definitions
    from tests.support import EXAMPLES

    config = EXAMPLES / "orders_from_seed.yaml"
    defs = build_dataset_definitions(
        config, num_records=1200, buffer_size=300, resource=DataDesignerResource(artifact_path=str(tmp_path))
    )
    register_partitions(instance, DagsterDataset.create(config, 1200, 300))
    run_range(defs, instance, 2, 3, name="orders")
    run_range(defs, instance, 0, 1, name="orders")
    result = materialize_dataset(defs, instance, name="orders")
    combined = pq.read_table(
        result.get_asset_materialization_events()[0].materialization.metadata["path"].value
    ).to_pandas()
    assert combined.equals(generate(config, 1200, buffer_size=300, artifact_path=tmp_path / "standalone").load())
    assert "discount" not in combined.columns and "description" in combined.columns


def test_row_count_check_accounts_for_rows_dropped_by_failed_llm_cells(tmp_path, instance):
    from dd_core.testing.llm_server import OpenAIServer
    from dd_dagster import DataDesignerResource, build_dataset_definitions
    from tests.core.test_llm_columns import chain_config

    with OpenAIServer() as server:
        config = chain_config(server.base_url, max_retries=0)
        config["name"] = "tiny"
        config["max_failed_row_share"] = 0.5
        server.set_faults([{"kind": "status", "status": 500, "match": "about tea"}])
        defs = build_dataset_definitions(
            config, num_records=60, buffer_size=30, resource=DataDesignerResource(artifact_path=str(tmp_path))
        )
        register_partitions(instance, DagsterDataset.create(config, 60, 30))
        events = run_range(defs, instance, 0, 1).get_asset_materialization_events()
        dropped = sum(e.materialization.metadata["dropped_rows"].value for e in events)
        assert dropped > 0
        result = materialize_dataset(defs, instance)
    meta = result.get_asset_materialization_events()[0].materialization.metadata
    assert meta["dagster/row_count"].value == 60 - dropped and meta["dropped_rows"].value == dropped
    assert {e.check_name: e.passed for e in result.get_asset_check_evaluations()} == {"row_count_matches": True}
