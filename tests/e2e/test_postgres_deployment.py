"""The PostgreSQL-backed Dagster deployment (deployments/postgres) on a throwaway server."""

import shlex
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import dagster as dg
import psutil
import psycopg2
import pytest
from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage

from tests.e2e.postgres import pgtool, postgres_dagster_home, server_data_dir, throwaway_postgres
from tests.support import ROOT

pytestmark = pytest.mark.e2e

PG_CLI = [sys.executable, str(ROOT / "deployments" / "postgres" / "pg.py")]
TOY_PARTITIONS = dg.DynamicPartitionsDefinition(name="dd_toy_datasets")


@dg.asset(partitions_def=TOY_PARTITIONS)
def toy_dataset(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata={"dd/partition": context.partition_key})


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with throwaway_postgres(tmp_path_factory.mktemp("pg")) as pg:
        yield pg


@pytest.fixture
def dagster_home(server, tmp_path, monkeypatch) -> Path:
    """DAGSTER_HOME on the shared server, with its variables set for this process."""
    home, env = postgres_dagster_home(tmp_path, server, max_concurrent_runs=3, tag_limit=1)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return home


def alive(procs: list[psutil.Process]) -> list[psutil.Process]:
    """Those still running: exited children of PID 1 may linger here as zombies for a while."""

    def running(proc: psutil.Process) -> bool:
        try:
            return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False

    return [proc for proc in procs if running(proc)]


def naming(path: Path) -> list[psutil.Process]:
    """Processes whose command line names path (a server's children do not: see postmaster())."""
    return [p for p in psutil.process_iter(["cmdline"]) if str(path) in " ".join(p.info["cmdline"] or [])]


def test_materialize_partitions_on_postgres(dagster_home):
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
        assert isinstance(instance.run_storage, PostgresRunStorage)
        instance.add_dynamic_partitions(TOY_PARTITIONS.name, ["a", "b", "c"])
        for key in ("a", "b"):
            assert dg.materialize([toy_dataset], instance=instance, partition_key=key).success

    # A second instance sees it all: it lives in the server, not in the process.
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        asset_key = toy_dataset.key
        assert instance.get_dynamic_partitions(TOY_PARTITIONS.name) == ["a", "b", "c"]
        assert instance.get_materialized_partitions(asset_key) == {"a", "b"}
        latest = instance.get_latest_materialization_event(asset_key).asset_materialization
        assert (latest.partition, latest.metadata["dd/partition"].value) == ("b", "b")
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=asset_key, asset_partitions=["a"]), limit=1
        ).records
        assert records[0].asset_materialization.metadata["dd/partition"].value == "a"


def test_run_queue_config(dagster_home):
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        assert isinstance(instance.run_coordinator, dg.QueuedRunCoordinator)
        queue = instance.run_coordinator.get_run_queue_config()
        assert queue.max_concurrent_runs == 3
        assert queue.tag_concurrency_limits == [
            {"key": "dd/llm_endpoint", "value": {"applyLimitPerUniqueValue": True}, "limit": 1}
        ]
        assert instance.run_monitoring_enabled
        assert instance.run_monitoring_poll_interval_seconds == 5
        assert instance.run_monitoring_start_timeout_seconds == 120


def test_stop_leaves_no_server_process(tmp_path):
    with throwaway_postgres(tmp_path) as pg:
        main = pgtool.postmaster(pg.data_dir)
        procs = [main, *main.children(recursive=True)]
        assert len(procs) > 1
    assert not alive(procs)
    assert not alive(naming(pg.data_dir))
    assert not pg.data_dir.exists()
    assert "database system is shut down" in (tmp_path / "postgres-server.log").read_text()


def test_cli_round_trip(tmp_path):
    with server_data_dir(tmp_path) as data_dir:
        started = subprocess.run([*PG_CLI, "start", data_dir], capture_output=True, text=True, check=True)
        # Read the export lines as `eval` would.
        env = dict(shlex.split(line)[1].split("=", 1) for line in started.stdout.splitlines())
        assert set(env) == {"DD_PG_HOST", "DD_PG_PORT", "DD_PG_USER", "DD_PG_PASSWORD", "DD_PG_DB"}
        connect = {
            "host": env["DD_PG_HOST"],
            "port": env["DD_PG_PORT"],
            "user": env["DD_PG_USER"],
            "dbname": env["DD_PG_DB"],
        }
        with closing(psycopg2.connect(password=env["DD_PG_PASSWORD"], **connect)) as conn:
            with conn.cursor() as cur:
                cur.execute("select current_user, current_database()")
                assert cur.fetchone() == ("dd", "dagster")
        with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
            psycopg2.connect(password="wrong", **connect)
        main = pgtool.postmaster(data_dir)
        for _ in range(2):  # stop is idempotent
            subprocess.run([*PG_CLI, "stop", data_dir], check=True, timeout=60)
        assert not alive([main])


def test_missing_postgres_is_installed_as_root(monkeypatch):
    """The install path, played without uninstalling the real server."""
    found = iter([None, Path("/usr/lib/postgresql/99/bin")])
    commands = []
    monkeypatch.setattr(pgtool, "find_bindir", lambda: next(found))
    monkeypatch.setattr(pgtool.os, "geteuid", lambda: 0)
    monkeypatch.setattr(pgtool.shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(pgtool.subprocess, "run", lambda args, **kw: commands.append(args))
    assert pgtool.bindir() == Path("/usr/lib/postgresql/99/bin")
    assert commands == [
        ["apt-get", "update"],
        ["apt-get", "install", "-y", "--no-install-recommends", "postgresql"],
    ]


def test_missing_postgres_says_how_to_install(monkeypatch):
    monkeypatch.setattr(pgtool, "find_bindir", lambda: None)
    monkeypatch.setattr(pgtool.os, "geteuid", lambda: 1000)
    with pytest.raises(RuntimeError, match="apt-get install postgresql"):
        pgtool.bindir()
