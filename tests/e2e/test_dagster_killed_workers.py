"""A Dagster run producing its row groups in 2 worker processes is SIGKILLed mid-way: the
workers die with it, and re-execution from failure generates exactly the row groups the killed
run had not recorded (a finished but unrecorded one is reused from its file), without asking
the model server again for any answer that had been read. The dataset equals ``ddsynth generate``'s.

The run is a real process (``tests/e2e/range_run.py``: ``dagster.execute_job`` on a SQLite
instance on disk shared with this test) against a local OpenAI-compatible server; the test
marks the killed run failed, as Dagster's run monitoring does, and re-executes it in process.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import dagster as dg
import psutil
import pytest

from dd_core import generate
from dd_core.testing.llm_server import OpenAIServer
from dd_dagster import DagsterDataset, register_partitions
from tests.dagster.env_job import env_job
from tests.dagster.helpers import QUIET, outcome, parts_config, range_tags
from tests.support import ROOT, answers_stopped, wait_for

pytestmark = pytest.mark.e2e

RECORDS, BUFFER, ROW_GROUPS = 240, 20, 12
ASSET = dg.AssetKey(["parts_row_groups"])


@pytest.mark.timeout(300)
def test_sigkilled_run_leaves_no_worker_and_reexecution_redoes_only_unrecorded_row_groups(tmp_path, monkeypatch):
    home = tmp_path / "dagster-home"
    home.mkdir()
    with OpenAIServer(latency_ms=20, latency_sigma=0.5) as server, dg.DagsterInstance.local_temp(str(home)) as instance:
        config = parts_config(tmp_path, server.base_url, RECORDS, BUFFER)
        env = {
            "DD_TEST_CONFIG": config,
            "DD_TEST_NUM_RECORDS": RECORDS,
            "DD_TEST_BUFFER_SIZE": BUFFER,
            "DD_TEST_ARTIFACTS": tmp_path / "dagster",
            "DD_TEST_WORKERS": 2,
        }
        for name, value in env.items():
            monkeypatch.setenv(name, str(value))
        register_partitions(instance, DagsterDataset.create(config, RECORDS, BUFFER))

        command = [sys.executable, "-m", "tests.e2e.range_run", str(home), "0", str(ROW_GROUPS - 1)]
        run_process = subprocess.Popen(
            command, cwd=ROOT, env=os.environ.copy(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        try:
            wait_for(
                lambda: len(instance.get_materialized_partitions(ASSET)) >= 3 or run_process.poll() is not None,
                120,
                "3 recorded row groups",
            )
            assert run_process.poll() is None, (
                f"the run ended before it was killed: {run_process.stderr.read()[-3000:]}"
            )
            workers = _dd_workers(psutil.Process(run_process.pid))
            with answers_stopped(server, tmp_path / "dagster"):  # nothing new is answered, every answer is on disk
                run_process.send_signal(signal.SIGKILL)
                run_process.wait(timeout=30)
        finally:
            run_process.kill()
            run_process.stderr.close()
        assert len(workers) == 2, f"expected the run's 2 worker processes, found {workers}"
        _, alive = psutil.wait_procs(workers, timeout=30)
        assert not [p for p in alive if p.status() != psutil.STATUS_ZOMBIE], (
            f"worker processes outlived the killed run: {alive}"
        )

        recorded = {int(k) for k in instance.get_materialized_partitions(ASSET)}
        assert 3 <= len(recorded) < ROW_GROUPS
        (run,) = instance.get_runs()
        assert run.status == dg.DagsterRunStatus.STARTED
        instance.report_run_failed(run, "the run's process was killed")  # as run monitoring does

        options = dg.ReexecutionOptions.from_failure(run.run_id, instance)
        with dg.execute_job(
            env_job(),
            instance=instance,
            reexecution_options=options,
            tags=range_tags(0, ROW_GROUPS - 1),
            run_config=QUIET,
        ) as retried:
            assert retried.success
            result = outcome(retried)
            files = {
                e.partition: e.materialization.metadata["path"].value
                for e in retried.get_asset_materialization_events()
            }
        successes = server.stats()["success_keys"]
        server.set_latency(0)
        standalone = generate(config, RECORDS, buffer_size=BUFFER, artifact_path=tmp_path / "standalone")

    assert sorted(result) == list(range(ROW_GROUPS))
    generated = {i for i, how in result.items() if how == "generated"}
    assert not generated & recorded, (
        f"row groups {sorted(generated & recorded)} were recorded by the killed run and generated again"
    )
    assert len(successes) == 2 * RECORDS and set(successes.values()) == {1}, (
        "an answer that had been read was asked for again"
    )
    expected = sorted((standalone.path / "parquet-files").glob("batch_*.parquet"))
    assert [open(files[f"{i:05d}"], "rb").read() for i in range(ROW_GROUPS)] == [p.read_bytes() for p in expected]


def _dd_workers(run: psutil.Process) -> list[psutil.Process]:
    """The run's dd worker processes: forked (the run's own command line) or started as
    ``python -m dd_core.engine.workers`` (not Dagster's compute-log ``tail`` and watchers)."""
    command = run.cmdline()
    return [
        p for p in run.children(recursive=True) if p.cmdline() == command or "dd_core.engine.workers" in p.cmdline()
    ]
