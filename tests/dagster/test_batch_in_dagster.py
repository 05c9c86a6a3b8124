"""Batch mode in Dagster, through each provider's batch API: a run SIGKILLed while its batch is
pending, re-executed from failure, collects the same batch (nothing re-submitted, nothing sent
online); materializations name the models' provider and carry cost. The run generates in its own
process although the resource allows worker processes."""

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
from tests.dagster.batch_job import BUFFER_SIZE, JOBS, NUM_RECORDS, PRICE, batch_config, batch_defs
from tests.providers import KEY, KEY_ENV, SETTINGS, server_batches, submitted_keys, varied_chain
from tests.support import ROOT, batch_clock_moved_by_polls, polled_in_progress, wait_for

RANGE = {ASSET_PARTITION_RANGE_START_TAG: "00000", ASSET_PARTITION_RANGE_END_TAG: "00001"}


def batches(server, provider: str) -> Counter:
    """How many batches each batch id names (1 each: none made twice), by id."""
    return Counter(b["id"] for b in server_batches(server, provider))


def straight_config(server, provider: str) -> dict:
    """The same dataset asked online, outside Dagster."""
    if provider == "openai":
        return batch_config() | {
            "models": [{**batch_config()["models"][0], "base_url": server.base_url, "batch": False}]
        }
    config = varied_chain(server.root_url)
    config["models"][0].update(SETTINGS[provider], price=PRICE)
    return config


@pytest.mark.timeout(300)
@pytest.mark.parametrize("provider", ["openai", "azure", "anthropic"])
def test_run_killed_while_its_batch_is_pending_then_reexecuted_collects_the_same_batch(tmp_path, monkeypatch, provider):
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    with OpenAIServer(latency_ms=2, api_key=None if provider == "openai" else KEY) as server:
        server.set_batch_settings(processing_s=2.0)
        server.stop_batch_clock()  # the run's batches stay in progress until the re-execution polls them
        env = {
            "DAGSTER_HOME": str(home),
            "DD_TEST_BASE_URL": server.base_url if provider == "openai" else server.root_url,
            "DD_TEST_ARTIFACTS": str(tmp_path / "artifacts"),
            "DD_TEST_PROVIDER": provider,
            KEY_ENV: KEY,
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
                wait_for(
                    lambda: batches(server, provider) or child.poll() is not None, 120, "the run to submit its batches"
                )
                assert child.poll() is None, child.stderr.read()
                # It is polling its pending batches now.
                submitted = lambda: list(batches(server, provider))  # noqa: E731
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
            pending = batches(server, provider)

            options = dg.ReexecutionOptions.from_failure(killed.run_id, instance)
            with (
                batch_clock_moved_by_polls(server, 0.1),
                dg.execute_job(
                    dg.reconstructable(JOBS[provider]), instance=instance, reexecution_options=options, tags=RANGE
                ) as retried,
            ):
                assert retried.success
                events = retried.get_asset_materialization_events()
                logged = [e.message for e in instance.all_logs(retried.run_id) if e.message]
            assert any("in_progress" in m and "of 20 done" in m for m in logged), "batch progress is in the run's log"
            collected = batches(server, provider)
            assert set(pending) <= set(collected) and len(collected) == 4, "the same batches were collected"
            keys = submitted_keys(server, provider)
            assert len(keys) == len(set(keys)) == 2 * NUM_RECORDS, "no request was submitted twice"
            assert server.stats()["requests_total"] == 0, "no online call"

            models = {e.materialization.metadata["models"].value for e in events}
            assert models == {f"writer: {provider} test-model (batch)"}, "the run's metadata names the provider"
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
            straight_config(server, provider),
            NUM_RECORDS,
            buffer_size=BUFFER_SIZE,
            artifact_path=tmp_path / "straight",
        )
    produced = sorted((tmp_path / "artifacts" / "chain").glob("*/parquet-files/batch_*.parquet"))
    dagster_rows = pa.concat_tables(pq.read_table(p) for p in produced).replace_schema_metadata(None).to_pandas()
    assert dagster_rows.equals(load_dataset(straight.path))
