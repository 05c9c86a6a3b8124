"""A run over 10 row groups (pipelined, in 2 worker processes) fails at row group 5, whose every
LLM call is answered 500; re-executed from failure, it generates exactly the row groups the
failed run did not record, and sends again no request whose answer was read."""

from __future__ import annotations

import dagster as dg

from dd_core.testing.llm_server import OpenAIServer
from dd_dagster import DagsterDataset, register_partitions
from tests.dagster.env_job import env_job
from tests.dagster.helpers import QUIET, outcome, parts_config, range_tags

RECORDS, BUFFER = 200, 20
PARALLEL = 6  # parts_config's max_parallel_requests


def test_reexecute_from_failure_generates_only_the_unfinished_row_groups(tmp_path, instance, monkeypatch):
    with OpenAIServer(latency_ms=5, latency_sigma=1.0) as server:
        config = parts_config(tmp_path, server.base_url, RECORDS, BUFFER)
        for name, value in {
            "DD_TEST_CONFIG": config,
            "DD_TEST_NUM_RECORDS": RECORDS,
            "DD_TEST_BUFFER_SIZE": BUFFER,
            "DD_TEST_ARTIFACTS": tmp_path,
            "DD_TEST_WORKERS": 2,
        }.items():
            monkeypatch.setenv(name, str(value))
        register_partitions(instance, DagsterDataset.create(config, RECORDS, BUFFER))
        job = env_job()
        server.set_faults([{"kind": "status", "status": 500, "match": "(part p5)"}])
        with dg.execute_job(
            job, instance=instance, tags=range_tags(0, 9), run_config=QUIET, raise_on_error=False
        ) as failed:
            assert not failed.success
            recorded = outcome(failed)
            message = failed.get_step_failure_events()[0].step_failure_data.user_failure_data.description
            parent_id = failed.run_id
        # Each row group finished before the failing one was recorded at once.
        assert "row group 5 failed" in message
        assert set(range(5)) <= set(recorded) and 5 not in recorded and set(recorded.values()) == {"generated"}
        server.clear_faults()
        options = dg.ReexecutionOptions.from_failure(parent_id, instance)
        with dg.execute_job(
            job, instance=instance, reexecution_options=options, tags=range_tags(0, 9), run_config=QUIET
        ) as retried:
            assert retried.success
            result = outcome(retried)
        successes = server.stats()["success_keys"]
    assert result == {i: "reused" if i in recorded else "generated" for i in range(10)}
    assert instance.get_materialized_partitions(dg.AssetKey(["parts_row_groups"])) == {f"{i:05d}" for i in range(10)}
    # Every answer read was kept (the response cache); only requests in flight when the run
    # stopped (at most max_parallel_requests) may have been answered unread and asked again.
    assert len(successes) == 2 * RECORDS
    assert sum(n - 1 for n in successes.values()) <= PARALLEL, (
        f"{sum(n - 1 for n in successes.values())} answered requests sent again"
    )
