"""After a config change (issue 11): the combined asset refuses before writing, the row-group
asset's own check reports stale and missing row groups, the regeneration sensor requests
exactly those, and bad partition keys fail with the valid range. Temporary SQLite instances."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from dd_dagster import DagsterDataset, register_partitions
from tests.dagster.helpers import QUIET, materialize_dataset, outcome, run_range, tiny_config, tiny_defs

ROW_GROUPS = dg.AssetKey(["tiny_row_groups"])
COMBINED = dg.AssetKey(["tiny"])
CURRENT = dg.AssetCheckKey(ROW_GROUPS, "row_groups_current")


def _check(result) -> dg.AssetCheckEvaluation:
    [evaluation] = [e for e in result.get_asset_check_evaluations() if e.check_name == "row_groups_current"]
    return evaluation


def _run_check_alone(defs: dg.Definitions, instance) -> dg.AssetCheckEvaluation:
    """As the check's "Execute" button does: a run of the check only."""
    job = dg.define_asset_job("check_only", selection=dg.AssetSelection.checks(CURRENT))
    result = (
        dg.Definitions.merge(defs, dg.Definitions(jobs=[job]))
        .resolve_job_def("check_only")
        .execute_in_process(instance=instance, run_config=QUIET)
    )
    return _check(result)


def test_combined_asset_refuses_before_writing_after_a_config_change(tmp_path, tiny_registered):
    v1, v2 = tiny_defs(tmp_path, high=100), tiny_defs(tmp_path, high=50)
    run_range(v1, tiny_registered, 0, 3)
    assert materialize_dataset(v1, tiny_registered).success
    old_file = Path(str(DagsterDataset.create(tiny_config(100), 200, 50).combined_path(tmp_path)))
    old_bytes = old_file.read_bytes()
    run_range(v2, tiny_registered, 0, 0)  # one of four regenerated under the new config

    refused = materialize_dataset(v2, tiny_registered)
    assert not refused.success
    failure = refused.get_step_failure_events()[0].step_failure_data.user_failure_data
    assert (
        "tiny was not combined (nothing was written): 3 of 4 row groups are not current: 3 stale (00001, 00002, 00003)"
        in failure.description
    )
    assert "tiny_regenerate_stale" in failure.description and "tiny_row_groups_job" in failure.description
    assert (failure.metadata["stale"].value, failure.metadata["missing"].value, failure.metadata["current"].value) == (
        3,
        0,
        1,
    )
    new_file = Path(str(DagsterDataset.create(tiny_config(50), 200, 50).combined_path(tmp_path)))
    assert not new_file.exists() and not list(new_file.parent.glob("*.parquet"))  # nor a temp file
    assert old_file.read_bytes() == old_bytes
    assert refused.get_asset_materialization_events() == [] and refused.get_asset_check_evaluations() == []
    history = tiny_registered.fetch_materializations(COMBINED, limit=10).records
    assert [r.asset_materialization.metadata["config_hash"].value for r in history] == [
        DagsterDataset.create(tiny_config(100), 200, 50).config_hash
    ]

    run_range(v2, tiny_registered, 1, 3)
    combined = materialize_dataset(v2, tiny_registered)
    assert combined.success and new_file.exists() and old_file.read_bytes() == old_bytes


def test_combined_asset_refuses_while_a_row_group_is_missing_or_its_file_is_gone(tmp_path, tiny_registered):
    defs = tiny_defs(tmp_path)
    run_range(defs, tiny_registered, 0, 2)
    failure = (
        materialize_dataset(defs, tiny_registered).get_step_failure_events()[0].step_failure_data.user_failure_data
    )
    assert "1 missing (00003)" in failure.description
    gone = (
        run_range(defs, tiny_registered, 3, 3)
        .get_asset_materialization_events()[0]
        .materialization.metadata["path"]
        .value
    )
    with open(gone, "r+b") as fh:
        fh.truncate(10)
    refused = materialize_dataset(defs, tiny_registered)
    assert (
        "1 row group file(s) are missing or damaged: 00003"
        in refused.get_step_failure_events()[0].step_failure_data.user_failure_data.description
    )
    assert not DagsterDataset.create(tiny_config(), 200, 50).combined_path(tmp_path).exists()


def test_row_group_check_counts_missing_and_stale_and_passes_when_all_are_current(tmp_path, tiny_registered):
    v1, v2 = tiny_defs(tmp_path, high=100), tiny_defs(tmp_path, high=50)
    partial = _check(run_range(v1, tiny_registered, 0, 1))  # every row-group run ends with the check
    assert not partial.passed and partial.severity == dg.AssetCheckSeverity.WARN
    assert (partial.metadata["current"].value, partial.metadata["missing"].value, partial.metadata["stale"].value) == (
        2,
        2,
        0,
    )
    assert partial.metadata["missing_keys"].value == "00002, 00003"
    complete = _check(run_range(v1, tiny_registered, 2, 3))
    assert complete.passed and complete.description == "all 4 row groups are current"

    run_range(v2, tiny_registered, 3, 3)
    stale = _run_check_alone(v2, tiny_registered)
    assert not stale.passed and stale.severity == dg.AssetCheckSeverity.ERROR
    assert (stale.metadata["current"].value, stale.metadata["stale"].value, stale.metadata["stale_keys"].value) == (
        1,
        3,
        "00000, 00001, 00002",
    )
    assert "3 stale (00000, 00001, 00002)" in stale.description
    latest = tiny_registered.event_log_storage.get_latest_asset_check_execution_by_key([CURRENT])[CURRENT]
    assert latest.status.value == "FAILED"
    assert _check(run_range(v2, tiny_registered, 0, 2)).passed


def test_regeneration_sensor_requests_exactly_the_stale_and_missing_row_groups(tmp_path, instance):
    register_partitions(instance, DagsterDataset.create(tiny_config(), 500, 50))  # 10 row groups
    v1 = tiny_defs(tmp_path, num_records=500, row_groups_per_run=3)
    run_range(v1, instance, 0, 7)
    v2 = tiny_defs(tmp_path, high=50, num_records=500, row_groups_per_run=3)
    run_range(v2, instance, 2, 3)
    sensor = v2.resolve_sensor_def("tiny_regenerate_stale")
    assert sensor.default_status == dg.DefaultSensorStatus.STOPPED
    with dg.build_sensor_context(instance=instance, definitions=v2) as ctx:
        requests = sensor.evaluate_tick(ctx).run_requests
    ranges = [
        (r.tags["dagster/asset_partition_range_start"], r.tags["dagster/asset_partition_range_end"]) for r in requests
    ]
    assert ranges == [("00000", "00001"), ("00004", "00006"), ("00007", "00009")]  # stale 0,1,4-7; missing 8,9
    assert all(r.job_name in (None, "tiny_row_groups_job") and r.tags["dd/regenerate"] == "tiny" for r in requests)

    # What it requests regenerates those and reuses nothing else.
    job = v2.resolve_job_def("tiny_row_groups_job")
    for request in requests:
        result = job.execute_in_process(instance=instance, tags=request.tags, run_config=QUIET)
        assert set(outcome(result).values()) == {"generated"}
    with dg.build_sensor_context(instance=instance, definitions=v2) as ctx:
        assert sensor.evaluate_tick(ctx).skip_message == "all 10 row groups are current"


def test_regeneration_sensor_waits_for_its_unfinished_runs(tmp_path, instance):
    register_partitions(instance, DagsterDataset.create(tiny_config(), 200, 50))
    defs = tiny_defs(tmp_path)
    job = defs.resolve_job_def("tiny_row_groups_job")
    pending = instance.create_run_for_job(job, tags={"dd/regenerate": "tiny"}, status=dg.DagsterRunStatus.NOT_STARTED)
    sensor = defs.resolve_sensor_def("tiny_regenerate_stale")
    with dg.build_sensor_context(instance=instance, definitions=defs) as ctx:
        assert sensor.evaluate_tick(ctx).skip_message == f"waiting for run {pending.run_id} to finish"


@pytest.mark.parametrize("key", ["foo", "00004", "0001", "000001", "-0001", "٠٠٠٠١"])
def test_a_key_that_names_no_row_group_fails_with_the_valid_range(tmp_path, tiny_registered, key):
    tiny_registered.add_dynamic_partitions("tiny_row_groups", [key])
    result = (
        tiny_defs(tmp_path)
        .resolve_job_def("tiny_row_groups_job")
        .execute_in_process(instance=tiny_registered, partition_key=key, run_config=QUIET, raise_on_error=False)
    )
    assert not result.success and result.get_asset_materialization_events() == []
    failure = result.get_step_failure_events()[0].step_failure_data
    assert failure.error.cls_name == "Failure"  # not a raw ValueError from int()
    assert failure.user_failure_data.description.startswith(
        f"partition key(s) {key!r} name no row group of tiny: valid keys are 00000..00003"
    )
    assert not list(tmp_path.rglob("*.parquet"))


def test_stray_keys_are_reported_not_deleted(tmp_path, tiny_registered):
    tiny_registered.add_dynamic_partitions("tiny_row_groups", ["foo", "00010"])
    defs = tiny_defs(tmp_path)
    with dg.build_sensor_context(instance=tiny_registered, definitions=defs) as ctx:
        skip = defs.resolve_sensor_def("tiny_register_row_groups").evaluate_tick(ctx).skip_message
    assert skip == "all 4 row groups are registered; 2 stray key(s) outside 00000..00003: foo, 00010"
    assert set(tiny_registered.get_dynamic_partitions("tiny_row_groups")) >= {"foo", "00010"}
    run_range(defs, tiny_registered, 0, 3)
    check = _run_check_alone(defs, tiny_registered)
    assert check.passed and check.metadata["stray_keys"].value == "foo, 00010"
    assert "name no row group (valid: 00000..00003): foo, 00010" in check.description
