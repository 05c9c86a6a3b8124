"""End-to-end tests of the Dagster harness against the toy code location.

One webserver + daemon pair serves the module (startup 10-17 s; each backfill 30-60 s because the
backfill daemon ticks every 30 s).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.e2e.dagster_services import (
    TERMINAL_RUN_STATUSES,
    DagsterServiceError,
    DagsterServices,
    backfill_status,
    kill_run_worker,
    launch_job_run,
    launch_partition_backfill,
    partition_keys,
    poll,
    processes_using_dagster_home,
    reexecute_backfill_from_failure,
    runs_of_backfill,
    sensor_tick,
    sqlite_instance_config,
    stale_status_by_partition,
    wait_for_backfill,
    wait_for_run_status,
)

pytestmark = pytest.mark.e2e

TOY_WORKSPACE = Path(__file__).parent / "toy_location" / "workspace.yaml"
ASSET = ["toy_table"]
KEYS = [f"row-{i:03d}" for i in range(4)]
RANGE_END = "dagster/asset_partition_range_end"


@pytest.fixture(scope="module")
def output_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("toy-output")


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory, output_dir: Path) -> Iterator[DagsterServices]:
    env = {"TOY_OUTPUT_DIR": str(output_dir), "TOY_PARTITION_COUNT": str(len(KEYS)), "TOY_SLEEP_SECONDS": "300"}
    home = tmp_path_factory.mktemp("dagster-home")
    with DagsterServices(home, TOY_WORKSPACE, instance_config=sqlite_instance_config(), env=env) as svc:
        yield svc


@pytest.fixture(scope="module")
def registered_tick(services: DagsterServices) -> dict:
    """The first tick of the sensor that registers the toy partitions."""
    return sensor_tick(services, "toy_rows_sensor", timeout=60)


def test_sensor_registers_dynamic_partitions(services: DagsterServices, registered_tick: dict) -> None:
    (request,) = registered_tick["dynamicPartitionsRequestResults"]
    assert (request["partitionsDefName"], request["type"]) == ("toy_rows", "ADD_PARTITIONS")
    assert request["partitionKeys"] == KEYS
    assert partition_keys(services, ASSET) == KEYS


def test_backfill_of_all_partitions_completes(services: DagsterServices, registered_tick: dict, output_dir: Path) -> None:
    assert set(stale_status_by_partition(services, ASSET, KEYS).values()) == {"MISSING"}

    backfill_id = launch_partition_backfill(services, ASSET, all_partitions=True, title="all rows")
    backfill = wait_for_backfill(services, backfill_id)

    assert backfill["status"] == "COMPLETED_SUCCESS", services.logs()
    assert backfill["assets"]["toy_table"] == {
        "numPartitionsTargeted": 4,
        "numPartitionsInProgress": 0,
        "numPartitionsMaterialized": 4,
        "numPartitionsFailed": 0,
    }
    runs = runs_of_backfill(services, backfill_id)
    assert sorted(run["tags"][RANGE_END] for run in runs) == ["row-001", "row-003"]  # multi_run(2)
    assert {run["status"] for run in runs} == {"SUCCESS"}
    assert all((output_dir / f"{key}.txt").exists() for key in KEYS)
    assert set(stale_status_by_partition(services, ASSET, KEYS).values()) == {"FRESH"}


def test_killed_run_fails_and_backfill_reexecutes_from_failure(
    services: DagsterServices, registered_tick: dict, output_dir: Path
) -> None:
    (output_dir / "row-003.hold").touch()
    backfill_id = launch_partition_backfill(services, ASSET, all_partitions=True, title="killed")
    poll(services, (output_dir / "row-003.sleeping").exists, bool, 120, "the held partition to start sleeping")
    (held_run,) = [run for run in runs_of_backfill(services, backfill_id) if run["tags"][RANGE_END] == "row-003"]

    kill_run_worker(services, held_run["runId"])
    wait_for_run_status(services, held_run["runId"], ["FAILURE"], timeout=30)  # measured: ~2 s

    failed = wait_for_backfill(services, backfill_id)
    assert failed["status"] == "COMPLETED_FAILED", services.logs()
    counts = failed["assets"]["toy_table"]
    assert (counts["numPartitionsMaterialized"], counts["numPartitionsFailed"]) == (2, 2)

    retry_id = reexecute_backfill_from_failure(services, backfill_id)
    retried = wait_for_backfill(services, retry_id)
    assert retried["status"] == "COMPLETED_SUCCESS", services.logs()
    counts = retried["assets"]["toy_table"]
    assert (counts["numPartitionsTargeted"], counts["numPartitionsMaterialized"]) == (2, 2)
    (retry_run,) = runs_of_backfill(services, retry_id)
    assert retry_run["tags"]["dagster/parent_backfill_id"] == backfill_id
    assert backfill_status(services, backfill_id)["status"] == "COMPLETED_FAILED"


def test_launch_job_run_for_one_partition(services: DagsterServices, registered_tick: dict) -> None:
    run_id = launch_job_run(services, "toy_job", partition_key="row-001", tags={"purpose": "e2e"})
    run = wait_for_run_status(services, run_id, TERMINAL_RUN_STATUSES, timeout=120)
    assert run["status"] == "SUCCESS", services.logs()
    assert run["tags"]["dagster/partition"] == "row-001"
    assert run["tags"]["purpose"] == "e2e"


def test_stop_leaves_no_process_behind(services: DagsterServices) -> None:
    started = {proc for pid in services.pids.values() for proc in _tree(pid)}
    assert len(started) >= 4  # webserver, daemon and their code servers

    services.stop()

    assert [proc for proc in started if _running(proc)] == []
    assert processes_using_dagster_home(services.dagster_home) == []


def test_broken_code_location_fails_fast_and_cleans_up(tmp_path: Path) -> None:
    broken = tmp_path / "broken_defs.py"
    broken.write_text("raise RuntimeError('toy location broken on purpose')\n")
    services = DagsterServices(tmp_path / "home", broken, instance_config=sqlite_instance_config())

    started = time.monotonic()
    with pytest.raises(DagsterServiceError, match="broken on purpose"):
        services.start()

    assert time.monotonic() - started < 90
    assert processes_using_dagster_home(services.dagster_home) == []


def _tree(pid: int) -> list[psutil.Process]:
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def _running(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
