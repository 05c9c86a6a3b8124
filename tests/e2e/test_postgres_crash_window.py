"""A run worker killed between a materialization's event row and its tag rows (issue 11, point 5).

dagster-postgres commits a materialization event, then its tag-index rows (dagster/data_version
among them) in a second transaction. A run killed between the two leaves a partition Dagster
counts as materialized (so "retry from failure" and "materialize missing" skip it) with no tag
row, which dd's fast checkpoint read (get_latest_tags_by_partition) does not see.

Made deterministic here: a session holds `LOCK TABLE asset_event_tags IN SHARE MODE` (inserts
wait, reads go on) while a backfill runs all 4 row groups in one run; the run writes row group
0's event row and waits on the lock inserting its tags; the test SIGKILLs the run's process
tree, then releases the lock (the dead client's transaction is rolled back). Then: dd's read
agrees with Dagster's view, the backfill's retry from failure regenerates row groups 1-3 only,
the row-group check passes, and the combined asset equals `ddsynth generate`.

PostgreSQL, dagster-webserver and dagster-daemon on 127.0.0.1; about 2-3 minutes.
"""

from __future__ import annotations

import json
from contextlib import closing
from pathlib import Path

import dagster as dg
import pandas as pd
import psycopg2
import pyarrow.parquet as pq
import pytest
import yaml
from dagster import DagsterEventType

from dd_dagster.checkpoints import DATA_VERSION_TAG, latest_records
from tests.e2e.asset_graphql import launch_asset_run, materializations, run_events
from tests.e2e.dagster_services import (
    TERMINAL_RUN_STATUSES,
    DagsterServices,
    kill_run_worker,
    launch_partition_backfill,
    partition_keys,
    poll,
    processes_using_dagster_home,
    reexecute_backfill_from_failure,
    runs_of_backfill,
    wait_for_backfill,
    wait_for_run_status,
)
from tests.e2e.postgres import postgres_dagster_home, throwaway_postgres
from tests.support import dd_generate_dataset

pytestmark = pytest.mark.e2e

WORKSPACE = Path(__file__).parent / "dd_location" / "workspace.yaml"
NAME = "crash"
NUM_RECORDS, BUFFER_SIZE = 200, 50
KEYS = [f"{i:05d}" for i in range(4)]
ROW_GROUPS = dg.AssetKey([f"{NAME}_row_groups"])
CONFIG = {
    "name": NAME,
    "seed": 9,
    "columns": [
        {"name": "kind", "type": "category", "values": ["a", "b", "c"]},
        {"name": "amount", "type": "gaussian", "mean": 100, "std": 15, "decimals": 2},
        {"name": "ref", "type": "uuid", "prefix": "r-"},
        {"name": "label", "type": "expression", "expr": "{{ kind }}:{{ amount }}"},
    ],
}
_TAG_INSERT_WAITING = """
SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query ILIKE 'INSERT INTO asset_event_tags%'
"""
_EVENT_ROWS = """
SELECT id, partition FROM event_logs WHERE dagster_event_type = 'ASSET_MATERIALIZATION' AND asset_key = %s ORDER BY id
"""


def _connect(pg):
    return psycopg2.connect(host=pg.host, port=pg.port, user=pg.user, password=pg.password, dbname=pg.db)


def _query(pg, sql: str, *args) -> list[tuple]:
    with closing(_connect(pg)) as conn, conn.cursor() as cur:
        cur.execute(sql, args or None)  # no parameters: a literal % stays as it is
        return cur.fetchall()


@pytest.mark.timeout(900)
def test_run_killed_between_event_and_tag_rows(tmp_path, monkeypatch):
    config_path = tmp_path / "crash.yaml"
    config_path.write_text(yaml.safe_dump(CONFIG, sort_keys=False))
    expected = dd_generate_dataset(config_path, tmp_path / "standalone", NUM_RECORDS, BUFFER_SIZE)
    with throwaway_postgres(tmp_path) as pg:
        home, env = postgres_dagster_home(tmp_path, pg, max_concurrent_runs=2)
        env |= {
            "DD_E2E_CONFIG": str(config_path),
            "DD_E2E_NUM_RECORDS": str(NUM_RECORDS),
            "DD_E2E_BUFFER_SIZE": str(BUFFER_SIZE),
            "DD_E2E_ROW_GROUPS_PER_RUN": str(len(KEYS)),  # all row groups in one run
            "DD_E2E_ARTIFACTS": str(tmp_path / "artifacts"),
        }
        for name, value in env.items():  # this process reads the instance too
            monkeypatch.setenv(name, value)
        with DagsterServices(home, WORKSPACE, env=env) as svc, dg.DagsterInstance.from_config(str(home)) as instance:
            poll(
                svc,
                lambda: partition_keys(svc, ROW_GROUPS.path),
                lambda keys: keys == KEYS,
                120,
                "the row groups' partitions",
            )

            # 1. Hold the tag table; the backfill's run writes row group 0's event row and waits.
            lock = _connect(pg)
            try:
                with lock.cursor() as cur:
                    cur.execute("LOCK TABLE asset_event_tags IN SHARE MODE")  # in a transaction until rollback
                backfill_id = launch_partition_backfill(svc, ROW_GROUPS.path, all_partitions=True, title="crash window")
                (run,) = poll(svc, lambda: runs_of_backfill(svc, backfill_id), bool, 180, "the backfill's run")
                waiting = poll(
                    svc, lambda: _query(pg, _TAG_INSERT_WAITING), bool, 180, "the run to wait on the tag table"
                )
                events = _query(pg, _EVENT_ROWS, json.dumps(ROW_GROUPS.path))
                assert [partition for _, partition in events] == ["00000"], events
                kill_run_worker(svc, run["runId"])
            finally:
                lock.rollback()
                lock.close()
            poll(
                svc,
                lambda: _query(pg, "SELECT pid FROM pg_stat_activity WHERE pid = %s", waiting[0][0]),
                lambda rows: not rows,
                60,
                "the dead run's session to end",
            )
            assert wait_for_run_status(svc, run["runId"], TERMINAL_RUN_STATUSES)["status"] == "FAILURE"

            # 2. The crash window: Dagster counts row group 0 as materialized, its tag rows are gone.
            event_id = events[0][0]
            assert _query(pg, "SELECT count(*) FROM asset_event_tags WHERE event_id = %s", event_id) == [(0,)]
            assert instance.get_materialized_partitions(ROW_GROUPS) == {"00000"}
            tags = instance.event_log_storage.get_latest_tags_by_partition(
                ROW_GROUPS, DagsterEventType.ASSET_MATERIALIZATION, [DATA_VERSION_TAG]
            )
            assert tags == {}
            # dd reads the checkpoint from the materialization record itself.
            records = latest_records(instance, ROW_GROUPS, KEYS)
            [recorded] = [m for m in materializations(svc, ROW_GROUPS.path) if m["partition"] == "00000"]
            assert list(records) == ["00000"] and records["00000"].data_version == recorded["tags"][DATA_VERSION_TAG]
            failed = wait_for_backfill(svc, backfill_id)
            assert failed["status"] == "COMPLETED_FAILED"
            assert (
                failed["assets"][ROW_GROUPS.path[0]]["numPartitionsMaterialized"],
                failed["assets"][ROW_GROUPS.path[0]]["numPartitionsFailed"],
            ) == (1, 3)

            # 3. Retry from failure: row groups 1-3 only; the check counts row group 0 as current.
            retry_id = reexecute_backfill_from_failure(svc, backfill_id)
            retried = wait_for_backfill(svc, retry_id, timeout=300)
            assert retried["status"] == "COMPLETED_SUCCESS", f"{retried}\n{svc.logs()}"
            (retry_run,) = runs_of_backfill(svc, retry_id)
            by_run = [
                m["partition"] for m in materializations(svc, ROW_GROUPS.path) if m["runId"] == retry_run["runId"]
            ]
            assert sorted(by_run) == KEYS[1:]
            [check] = run_events(svc, retry_run["runId"])["checks"]
            assert check["success"] and check["meta"]["current"] == 4, check

            # 4. The combined asset finishes and equals `ddsynth generate`.
            combine_id = launch_asset_run(svc, [[NAME]])
            assert wait_for_run_status(svc, combine_id, TERMINAL_RUN_STATUSES, timeout=180)["status"] == "SUCCESS", (
                svc.logs()
            )
            combined_meta = materializations(svc, [NAME])[0]["meta"]
            combined = pq.read_table(combined_meta["path"]).replace_schema_metadata(None).to_pandas()
        assert processes_using_dagster_home(home) == []
    pd.testing.assert_frame_equal(combined, expected)
