"""Throwaway PostgreSQL servers and Dagster homes on them, for end-to-end tests."""

from __future__ import annotations

import contextlib
import importlib.util
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from tests.support import ROOT


def _load_pgtool():
    """deployments/postgres/pg.py is a script, not a package module: load it by path."""
    spec = importlib.util.spec_from_file_location("dd_deploy_pg", ROOT / "deployments" / "postgres" / "pg.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


pgtool = _load_pgtool()
PgServer = pgtool.PgServer


@contextlib.contextmanager
def server_data_dir(tmp_dir: Path) -> Iterator[Path]:
    """A path for a new server's data folder; on exit its server is stopped, its server.log
    copied to tmp_dir and the folder deleted.

    The folder is in the system temp dir, not in tmp_dir: as root the server runs as
    `postgres`, which cannot enter pytest's tmp_path (root's, mode 0700)."""
    base = Path(tempfile.mkdtemp(prefix="dd-pg-"))
    base.chmod(0o711)
    data_dir = base / "data"
    try:
        yield data_dir
    finally:
        try:
            pgtool.stop(data_dir)
        finally:
            if (data_dir / "server.log").exists():
                shutil.copy(data_dir / "server.log", Path(tmp_dir) / "postgres-server.log")
            shutil.rmtree(base, ignore_errors=True)


@contextlib.contextmanager
def throwaway_postgres(tmp_dir: Path) -> Iterator[PgServer]:
    """A fresh server with a `dagster` database, always stopped and deleted on exit."""
    with server_data_dir(tmp_dir) as data_dir:
        yield pgtool.start(data_dir)


def postgres_dagster_home(
    tmp_dir: Path, pg: PgServer, max_concurrent_runs: int = 4, tag_limit: int = 2
) -> tuple[Path, dict[str, str]]:
    """A DAGSTER_HOME with deployments/postgres/dagster.yaml on `pg` (dd/llm_endpoint limit =
    tag_limit), and the environment every process that opens it needs, DAGSTER_HOME included."""
    home = pgtool.write_dagster_home(Path(tmp_dir) / "dagster_home", llm_endpoint_limit=tag_limit)
    env = {**pg.env, "DAGSTER_HOME": str(home), "DD_MAX_CONCURRENT_RUNS": str(max_concurrent_runs)}
    return home, env
