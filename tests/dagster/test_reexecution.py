"""A run over 10 row groups fails at the 6th; re-executed from failure, only 5 are generated."""

from __future__ import annotations

import dagster as dg
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from dd_core.storage.faults import reset_fault_hits
from dd_dagster import DagsterDataset, register_partitions
from tests.dagster.helpers import QUIET, outcome, tiny_config
from tests.dagster.reexecution_job import tiny_row_groups_job

RANGE = {ASSET_PARTITION_RANGE_START_TAG: "00000", ASSET_PARTITION_RANGE_END_TAG: "00009"}


def test_reexecute_from_failure_generates_only_the_unfinished_row_groups(tmp_path, instance, monkeypatch):
    monkeypatch.setenv("DD_TEST_ARTIFACTS", str(tmp_path))
    register_partitions(instance, DagsterDataset.create(tiny_config(), 500, 50))
    job = dg.reconstructable(tiny_row_groups_job)
    monkeypatch.setenv("DD_FAULT_POINT", "parquet_tmp_written")
    monkeypatch.setenv("DD_FAULT_HIT", "6")
    monkeypatch.setenv("DD_FAULT_ACTION", "raise")
    with dg.execute_job(job, instance=instance, tags=RANGE, run_config=QUIET, raise_on_error=False) as failed:
        assert not failed.success
        assert sorted(outcome(failed)) == [0, 1, 2, 3, 4]  # each finished row group recorded at once
        parent_id = failed.run_id
    for name in ("DD_FAULT_POINT", "DD_FAULT_HIT", "DD_FAULT_ACTION"):
        monkeypatch.delenv(name)
    reset_fault_hits()
    options = dg.ReexecutionOptions.from_failure(parent_id, instance)
    with dg.execute_job(job, instance=instance, reexecution_options=options, tags=RANGE, run_config=QUIET) as retried:
        assert retried.success
        result = outcome(retried)
    assert result == {**{i: "reused" for i in range(5)}, **{i: "generated" for i in range(5, 10)}}
    partitions = instance.get_materialized_partitions(dg.AssetKey(["tiny_row_groups"]))
    assert partitions == {f"{i:05d}" for i in range(10)}
