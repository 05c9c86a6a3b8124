"""Parallel runs of one dataset through the PostgreSQL deployment (issue 6, part 1).

PostgreSQL, dagster-webserver and dagster-daemon start once for the module, on an instance
with ``max_concurrent_runs=2``; the code location (parallel_location/parallel_defs.py) serves
one LLM-bound config, chained like tests/core/test_llm_columns.py's ``chain_config``, as two
datasets against a local OpenAI-compatible server (deterministic replies, fixed latency, and a
log of every request: an independent record of the work done):

- ``parallel``: 12 row groups, at most 2 per run. Its backfill makes 6 runs, 2 at a time.
- ``twice``: the same 12 row groups (own partitions, own files), all in one run. Its backfill
  is launched twice at once, so the two backfills' runs start together and race for every
  row group. (With 2 per run, Dagster's run queue is FIFO: the second backfill's 6 runs would
  only start after the first's 6 had, each after its range was done, and never race.)

Each row group makes 2 LLM requests per row (question, then answer) with a per-cell seed, so
every request key belongs to one row group: a key that succeeded twice means a row group
generated twice at once (a later regeneration would be served from the row group's response
cache; the ``reused: false`` count catches that one).

About 3.5-4.5 minutes: services ~25 s, the registration sensor, then per backfill one to three
30 s backfill-daemon ticks on top of the runs (the queue launches runs ~2.5 s apart; a run
process starts in ~3-10 s).
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

import dd_core
from dd_core.testing.llm_server import OpenAIServerProcess
from tests.e2e.dagster_services import (
    DagsterServices,
    launch_partition_backfill,
    partition_keys,
    poll,
    processes_using_dagster_home,
    runs_of_backfill,
    wait_for_backfill,
)
from tests.e2e.postgres import postgres_dagster_home, throwaway_postgres

pytestmark = pytest.mark.e2e

LOCATION = Path(__file__).parent / "parallel_location" / "parallel_defs.py"
ROW_GROUPS = 12
# Rows per row group: 40 requests, 4 at a time, 300 ms each: ~3-3.5 s per row group. (That runs
# overlap is not left to these durations: see ``llm_held_until_two_runs_planned``.)
BUFFER_SIZE = 20
NUM_RECORDS = ROW_GROUPS * BUFFER_SIZE
LATENCY_MS = 300
MAX_PARALLEL_REQUESTS = 4
LLM_COLUMNS = 2
PARALLEL, TWICE = "parallel", "twice"  # dataset names (and asset key prefixes)
KEYS = [f"{i:05d}" for i in range(ROW_GROUPS)]
RANGE_START = "dagster/asset_partition_range_start"
PLAN = re.compile(r"(\d+) row group\(s\) to reuse, (\d+) to generate")
BACKFILL_TIMEOUT = 300


def llm_config(base_url: str) -> dict:
    """Two chained llm_text columns (like test_llm_columns.chain_config) and an expression."""
    return {
        "name": "chain",
        "seed": 1234,
        "models": [
            {
                "alias": "writer",
                "model": "test-model",
                "base_url": base_url,
                "max_parallel_requests": MAX_PARALLEL_REQUESTS,
                "max_retries": 6,
            }
        ],
        "columns": [
            {"name": "topic", "type": "category", "values": ["cats", "ships", "tea"]},
            {
                "name": "question",
                "type": "llm_text",
                "model": "writer",
                "prompt": "Write a question about {{ topic }}.",
                "system_prompt": "You are curious.",
            },
            {"name": "answer", "type": "llm_text", "model": "writer", "prompt": "Answer this question: {{ question }}"},
            {"name": "answer_length", "type": "expression", "expr": "{{ answer | length }}", "dtype": "int"},
        ],
    }


@dataclass
class Deployment:
    svc: DagsterServices
    instance: dg.DagsterInstance
    llm: OpenAIServerProcess
    config_path: Path
    artifacts: Path
    tmp: Path

    def why(self, message: str) -> str:
        return f"{message}\n{self.svc.logs()}"


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    tmp = tmp_path_factory.mktemp("parallel-runs")
    with OpenAIServerProcess(latency_ms=LATENCY_MS) as llm, throwaway_postgres(tmp) as pg:
        config_path = tmp / "chain.json"
        config_path.write_text(json.dumps(llm_config(llm.base_url)))
        home, env = postgres_dagster_home(tmp, pg, max_concurrent_runs=2, tag_limit=2)
        env |= {
            "DD_E2E_CONFIG": str(config_path),
            "DD_E2E_NUM_RECORDS": str(NUM_RECORDS),
            "DD_E2E_BUFFER_SIZE": str(BUFFER_SIZE),
            "DD_E2E_ARTIFACTS": str(tmp / "artifacts"),
            "DD_E2E_DATASETS": f"{PARALLEL}:2,{TWICE}:{ROW_GROUPS}",
            "DD_E2E_LLM_ALIAS": "writer",
            "DD_E2E_LLM_BASE_URL": llm.base_url,
            # Dagster's telemetry uploader (started by the webserver and the daemon whatever
            # dagster.yaml says) moves DAGSTER_HOME/logs away, where DagsterServices writes
            # the services' logs, and POSTs it to Dagster's server. This variable stops it.
            "DAGSTER_DISABLE_TELEMETRY": "1",
        }
        # This process reads the instance too (materialization records): it needs the same DD_PG_*.
        with pytest.MonkeyPatch.context() as mp:
            for name, value in env.items():
                mp.setenv(name, value)
            with DagsterServices(home, LOCATION, env=env) as svc, dg.DagsterInstance.from_config(str(home)) as instance:
                deployment = Deployment(svc, instance, llm, config_path, tmp / "artifacts", tmp)
                for dataset in (PARALLEL, TWICE):  # the registration sensors are on by default
                    poll(
                        svc,
                        lambda d=dataset: partition_keys(svc, [f"{d}_row_groups"]),
                        lambda keys: keys == KEYS,
                        120,
                        f"{dataset}'s partitions",
                    )
                yield deployment
    assert not processes_using_dagster_home(home), "a process of the Dagster deployment outlived the test"
    assert llm.process.poll() is not None, "the LLM server outlived the test"


# --------------------------------------------------------------------------- helpers


def launch_backfill(svc: DagsterServices, asset_paths: list[list[str]], title: str) -> str:
    """An asset backfill of all partitions of several assets, as the UI's "Materialize all"."""
    mutation = """
    mutation($p: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams: $p) {
      __typename ... on LaunchBackfillSuccess { backfillId } ... on Error { message }
      ... on PythonError { stack }
    } }"""
    params = {
        "assetSelection": [{"path": p} for p in asset_paths],
        "allPartitions": True,
        "fromFailure": False,
        "tags": [],
        "title": title,
    }
    result = svc.graphql(mutation, {"p": params})["launchPartitionBackfill"]
    assert result["__typename"] == "LaunchBackfillSuccess", result
    return result["backfillId"]


@contextmanager
def llm_held_until_two_runs_planned(dep: Deployment, backfill_ids: Callable[[], list[str]]):
    """Hold every LLM request until two runs of the backfills (ids from ``backfill_ids()``, once
    launched in the block) are in progress and have each logged their plan: neither can finish a
    row group before both have started and planned, however long one takes to start."""
    dep.llm.set_faults([{"kind": "hold", "name": "runs"}])
    try:
        yield
        poll(
            dep.svc,
            lambda: _planned_runs(dep.svc, backfill_ids()),
            lambda planned: len(planned) >= 2,
            BACKFILL_TIMEOUT,
            "two runs in progress, each with its plan",
        )
    finally:
        dep.llm.clear_faults()  # releases the held requests


def _planned_runs(svc: DagsterServices, backfill_ids: list[str]) -> list[str]:
    started = [r["runId"] for b in backfill_ids for r in runs_of_backfill(svc, b) if r["status"] == "STARTED"]
    return [run_id for run_id in started if any(PLAN.search(m) for m in run_log_messages(svc, run_id))]


def run_log_messages(svc: DagsterServices, run_id: str) -> list[str]:
    query = """query($id: ID!) { logsForRun(runId: $id, limit: 1000) {
      ... on EventConnection { events { ... on MessageEvent { message } } } } }"""
    return [e.get("message", "") for e in svc.graphql(query, {"id": run_id})["logsForRun"]["events"]]


def materializations(instance: dg.DagsterInstance, asset_key: dg.AssetKey) -> dict[str, list]:
    """Every materialization of each partition, oldest first."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=asset_key), limit=1000, ascending=True
    ).records
    by_partition = defaultdict(list)
    for record in records:
        by_partition[record.partition_key].append(record)
    return dict(by_partition)


def meta(record, name: str):
    return record.asset_materialization.metadata[name].value


def overlapping(runs: list[dict]) -> list[tuple[str, str]]:
    """Pairs of runs whose [startTime, endTime] intersect."""
    return [
        (a["runId"], b["runId"])
        for i, a in enumerate(runs)
        for b in runs[i + 1 :]
        if max(a["startTime"], b["startTime"]) < min(a["endTime"], b["endTime"])
    ]


def intervals(runs: list[dict]) -> str:
    t0 = min(r["startTime"] for r in runs)
    return ", ".join(
        f"{r['tags'].get(RANGE_START, '-')}: {r['startTime'] - t0:.1f}-{r['endTime'] - t0:.1f}s"
        for r in sorted(runs, key=lambda r: r["startTime"])
    )


def assert_each_key_succeeded_once(dep: Deployment, stats: dict) -> None:
    counts = Counter(stats["success_keys"].values())
    expected = ROW_GROUPS * BUFFER_SIZE * LLM_COLUMNS
    assert counts == {1: expected}, dep.why(
        f"request keys by number of successes: {dict(counts)} (expected {expected} keys, once each)"
    )
    assert stats["by_status"] == {"200": expected}, dep.why(f"LLM server answered {stats['by_status']}")


# --------------------------------------------------------------------------- tests


def test_backfill_runs_in_parallel_and_generates_each_row_group_once(deployment: Deployment) -> None:
    dep, svc = deployment, deployment.svc
    dep.llm.reset_stats()
    row_groups_key = dg.AssetKey([f"{PARALLEL}_row_groups"])

    started = time.monotonic()
    launched: list[str] = []
    with llm_held_until_two_runs_planned(dep, lambda: launched):
        launched.append(launch_backfill(svc, [[f"{PARALLEL}_row_groups"], [PARALLEL]], title="parallel runs"))
    (backfill_id,) = launched
    backfill = wait_for_backfill(svc, backfill_id, timeout=BACKFILL_TIMEOUT)
    elapsed = time.monotonic() - started
    stats = dep.llm.stats()

    assert backfill["status"] == "COMPLETED_SUCCESS", dep.why(f"backfill: {backfill}")
    runs = runs_of_backfill(svc, backfill_id)
    assert {r["status"] for r in runs} == {"SUCCESS"}, dep.why(f"runs: {runs}")
    row_group_runs = [r for r in runs if RANGE_START in r["tags"]]
    assert len(row_group_runs) == ROW_GROUPS // 2, dep.why(
        f"expected {ROW_GROUPS // 2} runs of 2 row groups: {intervals(row_group_runs)}"
    )
    print(
        f"\nbackfill of {ROW_GROUPS} row groups, 2 per run, 2 runs at a time: {elapsed:.0f} s; runs {intervals(row_group_runs)}; "
        f"up to {stats['max_in_flight']} LLM requests in flight (one run: {MAX_PARALLEL_REQUESTS})"
    )

    # Runs overlapped in time...
    assert overlapping(row_group_runs), dep.why(f"no two runs overlapped: {intervals(row_group_runs)}")
    # ... and never more than the instance allows.
    edges = sorted([(r["startTime"], 1) for r in row_group_runs] + [(r["endTime"], -1) for r in row_group_runs])
    in_progress = max(sum(step for _, step in edges[: i + 1]) for i in range(len(edges)))
    assert in_progress <= 2, dep.why(
        f"{in_progress} runs at once with max_concurrent_runs=2: {intervals(row_group_runs)}"
    )

    # Each row group was generated exactly once: Dagster's records...
    records = materializations(dep.instance, row_groups_key)
    assert sorted(records) == KEYS, dep.why(f"materialized partitions: {sorted(records)}")
    for key, recs in records.items():
        assert [meta(r, "reused") for r in recs] == [False], dep.why(
            f"row group {key}: reused flags {[meta(r, 'reused') for r in recs]}"
        )
    # ... and the LLM server's: every request key answered once.
    assert_each_key_succeeded_once(dep, stats)

    # The combined dataset equals `ddsynth generate` of the same config (replies are deterministic
    # per request, so latency does not matter: drop it to save time).
    (combined,) = materializations(dep.instance, dg.AssetKey([PARALLEL])).values()
    combined_path = meta(combined[-1], "path")
    dep.llm.set_latency(0)
    try:
        standalone = dd_core.generate(
            dep.config_path, NUM_RECORDS, buffer_size=BUFFER_SIZE, artifact_path=dep.tmp / "standalone"
        )
    finally:
        dep.llm.set_latency(LATENCY_MS)
    expected = dd_core.load_dataset(standalone.path)
    actual = pd.read_parquet(combined_path)
    assert len(expected) == NUM_RECORDS
    pd.testing.assert_frame_equal(actual.reset_index(drop=True), expected.reset_index(drop=True))


def test_same_backfill_twice_at_once_generates_each_row_group_once(deployment: Deployment) -> None:
    dep, svc = deployment, deployment.svc
    dep.llm.reset_stats()
    asset = [f"{TWICE}_row_groups"]

    started = time.monotonic()
    launched: list[str] = []
    with llm_held_until_two_runs_planned(dep, lambda: launched):  # so both plan before any row group is done
        launched += [launch_partition_backfill(svc, asset, all_partitions=True, title=f"twice ({n})") for n in (1, 2)]
    first, second = launched
    done = [wait_for_backfill(svc, b, timeout=BACKFILL_TIMEOUT) for b in (first, second)]
    elapsed = time.monotonic() - started
    stats = dep.llm.stats()

    for backfill in done:
        assert backfill["status"] == "COMPLETED_SUCCESS", dep.why(f"backfill: {backfill}")
        assert backfill["assets"]["/".join(asset)]["numPartitionsMaterialized"] == ROW_GROUPS, dep.why(
            f"backfill: {backfill}"
        )
    runs = [run for b in (first, second) for run in runs_of_backfill(svc, b)]
    assert len(runs) == 2 and {r["status"] for r in runs} == {"SUCCESS"}, dep.why(f"runs: {runs}")
    print(f"\nthe same backfill twice at once: {elapsed:.0f} s; runs {intervals(runs)}")
    # The two runs were in progress together (both dequeued at once: 2 slots, 2 runs)...
    assert overlapping(runs), dep.why(f"the two backfills' runs did not overlap: {intervals(runs)}")

    # ... each row group was generated once, and reported by the other run as reused: same
    # file, same data version.
    records = materializations(dep.instance, dg.AssetKey(asset))
    assert sorted(records) == KEYS, dep.why(f"materialized partitions: {sorted(records)}")
    for key, recs in records.items():
        assert sorted(r.run_id for r in recs) == sorted(r["runId"] for r in runs), dep.why(
            f"row group {key}: runs {[r.run_id for r in recs]}"
        )
        generated = [r for r in recs if not meta(r, "reused")]
        reused = [r for r in recs if meta(r, "reused")]
        assert len(generated) == 1 and len(reused) == 1, dep.why(
            f"row group {key}: reused flags {[meta(r, 'reused') for r in recs]}"
        )
        (gen,), (again,) = generated, reused
        assert meta(again, "path") == meta(gen, "path"), dep.why(f"row group {key}: paths differ")
        versions = [r.asset_materialization.tags["dagster/data_version"] for r in (gen, again)]
        assert versions[0] == versions[1], dep.why(f"row group {key}: data versions {versions}")
    assert_each_key_succeeded_once(dep, stats)

    # They did race: a run planned to generate row groups the other was generating, waited for
    # their claims, found the finished files and reused them.
    plans = {r["runId"]: [m for msg in run_log_messages(svc, r["runId"]) if (m := PLAN.search(msg))] for r in runs}
    assert all(len(p) == 1 for p in plans.values()), dep.why(f"expected one plan message per run: {plans}")
    generated_by = Counter(r.run_id for recs in records.values() for r in recs if not meta(r, "reused"))
    waited = {run_id: int(p[0][2]) - generated_by[run_id] for run_id, p in plans.items()}
    assert any(n > 0 for n in waited.values()), dep.why(
        f"no run reused a row group it planned to generate: plans {plans}, generated {dict(generated_by)}"
    )
    print(
        f"row groups generated per run: {dict(generated_by)}; planned to generate but reused after the claim: {waited}"
    )
