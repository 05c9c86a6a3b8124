"""Batch mode in Dagster: a run SIGKILLed while its batch is pending, re-executed from failure,
collects the same batch (nothing re-submitted, nothing sent online); materializations carry cost.
The run generates in its own process although the resource allows worker processes."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections import Counter

import dagster as dg
import psutil
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dd_core import generate, load_dataset
from dd_core.testing.llm_server import OpenAIServer
from dd_dagster import DagsterDataset, register_partitions
from dd_dagster.dagster_internals import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG
from tests.core.test_llm_columns import chain_config
from tests.dagster.batch_job import BUFFER_SIZE, NUM_RECORDS, PRICE, batch_config, batch_defs, chain_row_groups_job
from tests.support import ROOT, batch_clock_moved_by_polls, polled_in_progress, wait_for

RANGE = {ASSET_PARTITION_RANGE_START_TAG: "00000", ASSET_PARTITION_RANGE_END_TAG: "00001"}


def batches(server) -> Counter:
    return Counter((b["metadata"]["dd_row_group"], b["metadata"]["dd_column"]) for b in server.batch_stats()["batches"])


@pytest.mark.timeout(300)
def test_run_killed_while_its_batch_is_pending_then_reexecuted_collects_the_same_batch(tmp_path, monkeypatch):
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    with OpenAIServer(latency_ms=2) as server:
        server.set_batch_settings(processing_s=2.0)
        server.stop_batch_clock()  # the run's batches stay in progress until the re-execution polls them
        env = {
            "DAGSTER_HOME": str(home),
            "DD_TEST_BASE_URL": server.base_url,
            "DD_TEST_ARTIFACTS": str(tmp_path / "artifacts"),
        }
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        with dg.DagsterInstance.get() as instance:
            register_partitions(instance, DagsterDataset.create(batch_config(), NUM_RECORDS, BUFFER_SIZE))
            child = subprocess.Popen(
                [sys.executable, "-m", "tests.dagster.batch_job"],
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
            try:
                wait_for(lambda: batches(server) or child.poll() is not None, 120, "the run to submit its batches")
                assert child.poll() is None, child.stderr.read()
                # It is polling its pending batches now.
                submitted = lambda: [b["id"] for b in server.batch_stats()["batches"]]  # noqa: E731
                wait_for(
                    lambda: len(submitted()) == 2 and polled_in_progress(server.batch_stats(), submitted()),
                    120,
                    "the run to poll both row groups' batches",
                )
                run = psutil.Process(child.pid)
                tree = [child, *run.children(recursive=True)]
                workers = [
                    p for p in tree[1:] if p.cmdline() == run.cmdline() or "dd_core.engine.workers" in p.cmdline()
                ]
                assert not workers, f"a batch-mode run generates in its own process, not in workers: {workers}"
                for proc in tree:
                    proc.send_signal(signal.SIGKILL)
                child.wait(timeout=30)
            finally:
                child.kill()
            assert child.returncode == -signal.SIGKILL
            (killed,) = instance.get_runs()
            assert killed.status == dg.DagsterRunStatus.STARTED, "a SIGKILLed run cannot report its end"
            instance.report_run_failed(killed)  # what run monitoring does once the worker is gone
            assert server.stats()["requests_total"] == 0
            pending = dict(batches(server))

            options = dg.ReexecutionOptions.from_failure(killed.run_id, instance)
            with (
                batch_clock_moved_by_polls(server, 0.1),
                dg.execute_job(
                    dg.reconstructable(chain_row_groups_job), instance=instance, reexecution_options=options, tags=RANGE
                ) as retried,
            ):
                assert retried.success
                events = retried.get_asset_materialization_events()
                logged = [e.message for e in instance.all_logs(retried.run_id) if e.message]
            assert any("in_progress" in m and "of 20 done" in m for m in logged), "batch progress is in the run's log"
            assert all(count == 1 for count in pending.values())
            assert batches(server) == Counter({(rg, c): 1 for rg in ("0", "1") for c in ("question", "answer")}), (
                "the same batches were collected"
            )
            keys = [k for b in server.batch_stats()["batches"] for k in b["keys"]]
            assert len(keys) == len(set(keys)) == 2 * NUM_RECORDS, "no request was submitted twice"
            assert server.stats()["requests_total"] == 0, "no online call"

            costs = {e.partition: e.materialization.metadata["llm/writer/cost_usd"].value for e in events}
            assert set(costs) == {"00000", "00001"} and all(c > 0 for c in costs.values())
            combined = dg.materialize([batch_defs().resolve_assets_def(dg.AssetKey(["chain"]))], instance=instance)
            (materialization,) = [
                e.materialization
                for e in combined.get_asset_materialization_events()
                if e.asset_key == dg.AssetKey(["chain"])
            ]
            metadata = materialization.metadata
            assert metadata["llm/cost_usd"].value == pytest.approx(sum(costs.values()), abs=1e-6)
            assert metadata["llm/writer/cost_usd"].value == metadata["llm/cost_usd"].value

        server.reset_batches()
        straight = generate(
            chain_config(server.base_url, price=PRICE),
            NUM_RECORDS,
            buffer_size=BUFFER_SIZE,
            artifact_path=tmp_path / "straight",
        )
    produced = sorted((tmp_path / "artifacts" / "chain").glob("*/parquet-files/batch_*.parquet"))
    dagster_rows = pa.concat_tables(pq.read_table(p) for p in produced).replace_schema_metadata(None).to_pandas()
    assert dagster_rows.equals(load_dataset(straight.path))
