"""A Dagster range run produces its row groups pipelined, in worker processes beside the run:
the same files as ``ddsynth generate``, within each model's request limit across the workers, each
row group's cost on its materialization."""

from __future__ import annotations

import time
from pathlib import Path

import dagster as dg

from dd_core.testing.llm_server import OpenAIServer
from dd_dagster import DagsterDataset, DataDesignerResource, build_dataset_definitions, register_partitions
from tests.dagster.helpers import outcome, parts_config, run_range
from tests.support import released_when, run_dd

RECORDS, BUFFER, PARALLEL = 160, 20, 6  # 8 row groups


def test_range_run_in_two_workers_writes_dd_generates_files_within_the_request_limit(tmp_path, instance):
    with OpenAIServer(latency_ms=25) as server:
        config = parts_config(
            tmp_path,
            server.base_url,
            RECORDS,
            BUFFER,
            parallel=PARALLEL,
            price={"input_per_mtok": 2.5, "output_per_mtok": 10.0},
        )
        resource = DataDesignerResource(artifact_path=str(tmp_path / "dagster"), workers=2)
        defs = build_dataset_definitions(config, num_records=RECORDS, buffer_size=BUFFER, resource=resource)
        register_partitions(instance, DagsterDataset.create(config, RECORDS, BUFFER))
        # Row groups 0 and 1 (one in each worker: each has 3 of the 6 slots) each keep two
        # requests held until a request of a later row group has been answered meanwhile.
        server.set_faults([{"kind": "hold", "name": "first", "match": f"(part p{i})", "times": 2} for i in (0, 1)])
        with released_when(
            server,
            "first",
            _later_row_group_answered_while_both_held(),
            "both workers held and a later row group answered",
        ):
            result = run_range(defs, instance, 0, 7, name="parts")
        stats = server.stats()
        assert outcome(result) == {i: "generated" for i in range(8)}
        assert stats["succeeded"] == 2 * RECORDS
        # The limit holds across the workers (counted at the server), and both were in flight together.
        assert PARALLEL // 2 < stats["max_in_flight"] <= PARALLEL, stats["max_in_flight"]
        # Pipelined: at some moment three row groups had requests in flight, so (with two
        # workers) one worker was running the next row group before the current one ended.
        assert _most_row_groups_in_flight(stats["request_log"]) >= 3

        done = run_dd(
            "generate",
            config,
            "-n",
            RECORDS,
            "--buffer-size",
            BUFFER,
            "--artifact-path",
            tmp_path / "standalone",
            "--workers",
            1,
        )
        assert done.returncode == 0, done.stderr
    events = result.get_asset_materialization_events()
    # What each row group was paid for, made in a worker, is on its materialization.
    assert all(e.materialization.metadata["llm/writer/cost_usd"].value > 0 for e in events)
    paths = {e.partition: Path(e.materialization.metadata["path"].value) for e in events}
    standalone = sorted((tmp_path / "standalone" / "parts" / "parquet-files").glob("batch_*.parquet"))
    assert [paths[f"{i:05d}"].name for i in range(8)] == [p.name for p in standalone]
    assert [paths[f"{i:05d}"].read_bytes() for i in range(8)] == [p.read_bytes() for p in standalone]
    materialized = instance.get_materialized_partitions(dg.AssetKey(["parts_row_groups"]))
    assert materialized == {f"{i:05d}" for i in range(8)}


def _later_row_group_answered_while_both_held():
    """A predicate over the server's stats: true once two requests of row group 0 and two of row
    group 1 are held (both workers in flight together), and a request of another row group that
    started after that has been answered. The server runs in this process: one clock."""
    held_since: list[float] = []

    def check(stats: dict) -> bool:
        if not held_since:
            if stats["held"].get("first") == 4:
                held_since.append(time.monotonic())
            return False
        return any(_part(entry) > 1 and entry["t_start"] > held_since[0] for entry in stats["request_log"])

    return check


def _most_row_groups_in_flight(log: list[dict]) -> int:
    """The most distinct row groups with a request in flight at one instant."""
    return max(len({_part(e) for e in log if e["t_start"] <= entry["t_start"] < e["t_end"]}) for entry in log)


def _part(entry: dict) -> int:
    """The row group a request served ("... (part p3)." in its prompt, or in the question it answers)."""
    return int(entry["prompt"].split("(part p", 1)[1].split(")", 1)[0])
