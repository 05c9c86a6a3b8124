"""Acceptance test of dd in Dagster (issue 5): a backfill of every row group is killed mid-way,
retried from failure, and the combined asset then equals `ddsynth generate` of the same config.

Real `dagster-webserver` + `dagster-daemon` on 127.0.0.1 with a temporary DAGSTER_HOME (SQLite,
run monitoring on), driven over GraphQL as the UI drives them; code location
tests/e2e/dd_location serving one dataset of 8 row groups (the last one partial).

How the run is stopped mid-way, deterministically: every Dagster process gets
DD_FAULT_POINT=parquet_renamed, DD_FAULT_ACTION=pause, DD_FAULT_HIT=5. The backfill makes one run
of all 8 row groups (row_groups_per_run=8), which produces them in one worker process beside the
run (workers=1: hits are counted per process, so with one worker the 5th file written is row
group 4; tests/e2e/test_dagster_killed_workers.py kills a run with 2). That worker (a config
without LLM columns: one row group after another) writes row groups 0-4 and pauses forever
right after row group 4's file is renamed into place, before returning it to the run; so the run
reports exactly row groups 0-3, and row group 4 is finished on disk but unreported. The test then
SIGKILLs the run's whole process tree. Hits are counted per process, so the retry never pauses:
its worker reuses row group 4's file and writes only 5, 6 and 7 (3 hits of 5).

Asserted about "generated exactly once": every row group has exactly one materialization over
both backfills; 0-3 come from the killed run and 5-7 from the retry with `reused: false`; row
group 4 (in flight at the kill) comes from the retry with `reused: true` and its file is the very
one the killed run wrote (same inode and mtime, data version = its sha256); no row-group file
was rewritten after the kill and no temp file is left.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import pandas as pd
import psutil
import pyarrow.parquet as pq
import pytest
import yaml

from tests.e2e.asset_graphql import launch_asset_run, materializations, run_events
from tests.e2e.dagster_services import (
    TERMINAL_RUN_STATUSES,
    DagsterServices,
    backfill_status,
    get_run,
    kill_run_worker,
    launch_partition_backfill,
    partition_keys,
    poll,
    processes_using_dagster_home,
    reexecute_backfill_from_failure,
    run_worker_pid,
    runs_of_backfill,
    sqlite_instance_config,
    stale_status_by_partition,
    wait_for_backfill,
    wait_for_run_status,
    wait_for_sensor_tick,
)
from tests.support import dd_generate_dataset

pytestmark = pytest.mark.e2e

WORKSPACE = Path(__file__).parent / "dd_location" / "workspace.yaml"
NAME = "e2e_customers"
NUM_RECORDS = 1450
BUFFER_SIZE = 200  # 8 row groups, the last one of 50 rows
KEYS = [f"{i:05d}" for i in range(8)]
ROW_GROUPS = [f"{NAME}_row_groups"]
COMBINED = [NAME]
SENSOR = f"{NAME}_register_row_groups"
PAUSED_AT = 4  # the worker pauses after writing this row group (its 5th parquet file), before reporting it
RANGE_START, RANGE_END = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"
FAULT_ENV = {"DD_FAULT_POINT": "parquet_renamed", "DD_FAULT_ACTION": "pause", "DD_FAULT_HIT": str(PAUSED_AT + 1)}

CONFIG = {
    "name": NAME,
    "seed": 7,
    "columns": [
        {
            "name": "region",
            "type": "category",
            "values": ["north", "south", "east", "west"],
            "weights": [0.4, 0.3, 0.2, 0.1],
        },
        {
            "name": "city",
            "type": "subcategory",
            "parent": "region",
            "values": {
                "north": ["oslo", "helsinki"],
                "south": ["rome", "madrid"],
                "east": ["warsaw", "kyiv"],
                "west": ["lisbon", "dublin"],
            },
        },
        {"name": "score", "type": "uniform", "low": 0, "high": 100, "decimals": 2},
        {"name": "record_id", "type": "uuid", "prefix": "rec-"},
        {"name": "person", "type": "person", "locale": "en_US", "age_range": [18, 80]},
        {
            "name": "summary",
            "type": "expression",
            "expr": "{{ person.first_name }} {{ person.last_name }} ({{ region }}/{{ city }}) score={{ score }}",
        },
    ],
    "processors": [
        {"type": "drop_columns", "columns": ["person"]},
        {"type": "rename_columns", "columns": {"score": "customer_score"}},
    ],
}

_RUN_MATERIALIZED_PARTITIONS = """
query($id: ID!) { runOrError(runId: $id) { __typename ... on Run { assetMaterializations { partition } } } }
"""
_ASSET_STALE = """
query($key: AssetKeyInput!) { assetNodeOrError(assetKey: $key) { __typename ... on AssetNode { staleStatus } } }
"""


@pytest.mark.timeout(900)
def test_killed_backfill_retried_from_failure_equals_dd_generate(tmp_path: Path) -> None:
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(CONFIG, sort_keys=False))
    artifacts = tmp_path / "artifacts"
    home = tmp_path / "dagster-home"
    expected = dd_generate_dataset(config_path, tmp_path / "standalone", NUM_RECORDS, BUFFER_SIZE)

    env = {
        "DD_E2E_CONFIG": str(config_path),
        "DD_E2E_NUM_RECORDS": str(NUM_RECORDS),
        "DD_E2E_BUFFER_SIZE": str(BUFFER_SIZE),
        "DD_E2E_ROW_GROUPS_PER_RUN": str(len(KEYS)),  # the whole backfill in one run
        "DD_E2E_ARTIFACTS": str(artifacts),
        "DD_E2E_WORKERS": "1",
        **FAULT_ENV,
    }
    started = time.time()
    svc = DagsterServices(home, WORKSPACE, instance_config=sqlite_instance_config(), env=env)
    killed_tree: list[psutil.Process] = []
    with svc:
        # 1. The sensor (running by default) registers one dynamic partition per row group.
        _phase(started, "services ready")
        tick = wait_for_sensor_tick(svc, SENSOR, after=started, timeout=120)
        _phase(started, "partitions registered")
        requests = tick["dynamicPartitionsRequestResults"]
        assert [(r["partitionsDefName"], r["type"]) for r in requests] == [(f"{NAME}_row_groups", "ADD_PARTITIONS")], (
            svc.logs()
        )
        assert requests[0]["partitionKeys"] == KEYS, requests
        assert partition_keys(svc, ROW_GROUPS) == KEYS, svc.logs()
        assert set(stale_status_by_partition(svc, ROW_GROUPS, KEYS).values()) == {"MISSING"}

        # 2. Backfill every row group as the UI does: one run of the range 00000...00007.
        backfill_id = launch_partition_backfill(svc, ROW_GROUPS, all_partitions=True, title="all row groups")
        (run,) = poll(svc, lambda: runs_of_backfill(svc, backfill_id), bool, 180, f"the run of backfill {backfill_id}")
        run_id = run["runId"]
        assert (run["tags"][RANGE_START], run["tags"][RANGE_END]) == (KEYS[0], KEYS[-1]), run["tags"]
        _phase(started, f"backfill {backfill_id} launched run {run_id} of job {run['jobName']}")

        # 3. Mid-way: the run has reported row groups 0-3; its worker wrote row group 4 and paused.
        files = artifacts / NAME
        poll(
            svc,
            lambda: _run_partitions(svc, run_id),
            lambda done: len(done) >= PAUSED_AT,
            180,
            f"run {run_id} to report {PAUSED_AT} row groups",
        )
        paused_file = poll(svc, lambda: _row_group_file(files, PAUSED_AT), bool, 60, f"row group {PAUSED_AT}'s file")
        time.sleep(2)  # nothing more can be reported: the worker never returns row group 4
        assert _run_partitions(svc, run_id) == KEYS[:PAUSED_AT], svc.logs()
        assert get_run(svc, run_id)["status"] == "STARTED", svc.logs()
        before_kill = {i: _stat(_row_group_file(files, i)) for i in range(PAUSED_AT + 1)}
        _phase(started, f"run paused after reporting {PAUSED_AT} row groups")

        # 4. SIGKILL the run's process tree (run worker, step process, generation worker).
        tree = _process_tree(svc, run_id)
        described = _describe(tree)
        pid = kill_run_worker(svc, run_id)
        killed_tree = tree
        assert pid == tree[0].pid and len(tree) >= 2, f"expected the run worker and its generation worker, got {tree}"
        failed_run = wait_for_run_status(svc, run_id, TERMINAL_RUN_STATUSES, timeout=120)
        assert failed_run["status"] == "FAILURE", svc.logs()
        assert not [p for p in killed_tree if _running(p)]
        _phase(started, f"killed the run's process tree ({described}); run FAILURE")

        # 5. The backfill ends failed: 4 row groups materialized, the 4 unreported ones failed.
        failed = wait_for_backfill(svc, backfill_id, timeout=240)
        assert failed["status"] == "COMPLETED_FAILED", f"{failed}\n{svc.logs()}"
        assert failed["assets"]["/".join(ROW_GROUPS)] == {
            "numPartitionsTargeted": 8,
            "numPartitionsInProgress": 0,
            "numPartitionsMaterialized": PAUSED_AT,
            "numPartitionsFailed": 8 - PAUSED_AT,
        }, svc.logs()
        _phase(started, "first backfill COMPLETED_FAILED")

        # 6. Re-execute the backfill from failure: a new backfill of row groups 4-7 only.
        retry_id = reexecute_backfill_from_failure(svc, backfill_id)
        retried = wait_for_backfill(svc, retry_id, timeout=300)
        assert retried["status"] == "COMPLETED_SUCCESS", f"{retried}\n{svc.logs()}"
        # An asset backfill's re-execution is a plain new backfill of target minus materialized
        # (Dagster 1.13 leaves fromFailure false); it is linked to its parent by title and run tags.
        assert retried["title"] == "Re-execution of all row groups"
        assert retried["assets"]["/".join(ROW_GROUPS)] == {
            "numPartitionsTargeted": 8 - PAUSED_AT,
            "numPartitionsInProgress": 0,
            "numPartitionsMaterialized": 8 - PAUSED_AT,
            "numPartitionsFailed": 0,
        }, svc.logs()
        (retry_run,) = runs_of_backfill(svc, retry_id)
        assert retry_run["status"] == "SUCCESS", f"{retry_run}\n{svc.logs()}"
        assert retry_run["tags"]["dagster/parent_backfill_id"] == backfill_id
        assert (retry_run["tags"][RANGE_START], retry_run["tags"][RANGE_END]) == (KEYS[PAUSED_AT], KEYS[-1])
        assert backfill_status(svc, backfill_id)["status"] == "COMPLETED_FAILED"
        _phase(started, "retry backfill COMPLETED_SUCCESS")

        # 7. Every row group was generated exactly once (see the module docstring).
        events = materializations(svc, ROW_GROUPS)
        by_partition: dict[str, list[dict]] = {}
        for event in events:
            by_partition.setdefault(event["partition"], []).append(event)
        assert sorted(by_partition) == KEYS and all(len(v) == 1 for v in by_partition.values()), _summary(events)
        latest = {key: evs[0] for key, evs in by_partition.items()}
        for i, key in enumerate(KEYS):
            event = latest[key]
            expected_run, expected_reused = (run_id, False) if i < PAUSED_AT else (retry_run["runId"], i == PAUSED_AT)
            assert (event["runId"], event["meta"]["reused"]) == (expected_run, expected_reused), (
                f"row group {i}: {_summary(events)}"
            )
            path = Path(event["meta"]["path"])
            assert path == _row_group_file(files, i)
            assert (event["meta"]["row_group"], event["meta"]["num_rows"]) == (key, 50 if i == 7 else BUFFER_SIZE)
            assert event["meta"]["config_hash"].startswith("sha256:")
            assert event["tags"]["dagster/data_version"].endswith(
                "." + hashlib.sha256(path.read_bytes()).hexdigest()[:16]
            )
            if i <= PAUSED_AT:
                assert _stat(path) == before_kill[i], f"row group {i}'s file was rewritten after the kill"
        assert paused_file == _row_group_file(files, PAUSED_AT)
        written = sorted(p.name for p in files.rglob("*") if p.is_file() and "parquet-files" in p.parts)
        assert written == [_row_group_file(files, i).name for i in range(8)], written  # no temp file left over

        # 8. All row groups are current.
        assert stale_status_by_partition(svc, ROW_GROUPS, KEYS) == {key: "FRESH" for key in KEYS}, svc.logs()

        # 9. Materialize the combined asset (with its checks) as the UI's "Materialize" button does.
        combine_id = launch_asset_run(svc, [COMBINED])
        combine_run = wait_for_run_status(svc, combine_id, TERMINAL_RUN_STATUSES, timeout=180)
        assert combine_run["status"] == "SUCCESS", svc.logs()
        checks = {e["checkName"]: e["success"] for e in run_events(svc, combine_id)["checks"]}
        assert checks == {"row_count_matches": True}, f"{checks}\n{svc.logs()}"
        assert [e["success"] for e in run_events(svc, retry_run["runId"])["checks"]] == [True]  # row_groups_current
        (combined_event,) = materializations(svc, COMBINED)
        assert combined_event["runId"] == combine_id
        assert (combined_event["meta"]["dagster/row_count"], combined_event["meta"]["row_groups"]) == (NUM_RECORDS, 8)
        combined = pq.read_table(combined_event["meta"]["path"]).replace_schema_metadata(None).to_pandas()
        assert _stale_status(svc, COMBINED) == "FRESH"
        assert stale_status_by_partition(svc, ROW_GROUPS, KEYS) == {key: "FRESH" for key in KEYS}, svc.logs()
        _phase(started, "combined asset materialized")

    # 10. The combined dataset equals `ddsynth generate` of the same config; nothing is left running.
    pd.testing.assert_frame_equal(combined, expected)
    assert combined.equals(expected)
    assert list(combined.columns) == ["region", "city", "customer_score", "record_id", "summary"]
    assert processes_using_dagster_home(home) == []
    assert not [p for p in killed_tree if _running(p)]
    _phase(started, "services stopped, dataset compared")


# --------------------------------------------------------------------------- helpers


def _phase(started: float, what: str) -> None:
    """Progress with elapsed time (shown by pytest -s, or with a failure)."""
    print(f"[{time.time() - started:6.1f} s] {what}", flush=True)


def _row_group_file(dataset_dir: Path, index: int) -> Path | None:
    """The row group's file under the dataset's (single) fingerprint folder, if written."""
    found = sorted(dataset_dir.glob(f"*/parquet-files/batch_{index:05d}*.parquet"))
    assert len(found) <= 1, found
    return found[0] if found else None


def _stat(path: Path) -> tuple[int, int, int]:
    st = path.stat()
    return st.st_ino, st.st_mtime_ns, st.st_size


def _run_partitions(svc: DagsterServices, run_id: str) -> list[str]:
    run = svc.graphql(_RUN_MATERIALIZED_PARTITIONS, {"id": run_id})["runOrError"]
    return sorted(event["partition"] for event in run["assetMaterializations"])


def _process_tree(svc: DagsterServices, run_id: str) -> list[psutil.Process]:
    """The run worker and its descendants, as they are now (for checking they are gone later)."""
    worker = psutil.Process(run_worker_pid(svc, run_id))
    return [worker, *worker.children(recursive=True)]


def _describe(tree: list[psutil.Process]) -> str:
    parts = []
    for proc in tree:
        try:
            parts.append(f"{proc.pid} {' '.join(proc.cmdline())[-70:]}")
        except psutil.Error:
            parts.append(f"{proc.pid} (gone)")
    return "; ".join(parts)


def _running(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _summary(events: list[dict]) -> str:
    return "\n".join(f"{e['partition']} run={e['runId'][:8]} reused={e['meta'].get('reused')}" for e in events)


def _stale_status(svc: DagsterServices, asset_path: list[str]) -> str:
    node = svc.graphql(_ASSET_STALE, {"key": {"path": asset_path}})["assetNodeOrError"]
    assert node["__typename"] == "AssetNode", node
    return node["staleStatus"]
