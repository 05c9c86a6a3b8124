"""Dagster's overhead over standalone generation, against Dagster's own limit; checkpoint reads.

    .venv/bin/python bench/dagster_overhead.py [--row-groups 100] [--rows-per-group 1000 10000] [--checkpoint-partitions 10000]

1. The same 100 row groups of examples/customers.yaml (1,000 and 10,000 rows each) made by
   ``dd_core.generate`` (in its own process without Dagster loaded, timed without imports, as
   ``ddsynth generate`` runs, with as many worker processes as the Dagster run: ``--workers``,
   default the cores available, both sides' default) and by materializing the row-group asset
   in process over the whole range (one run, a SQLite instance on disk, as `make demo` does).
   Dagster's own limit: the same asset and run with ``NothingMadeResource``, whose producer
   makes nothing (each row group handed back at once as if written), so the run records the
   same materializations (metadata, tags, log lines, checkpoint read, check evaluation) by the
   same code. The dd run is measured against max(standalone, no-op): target (issue 12)
   <= 1.1x at 1,000-row groups and <= 1.05x at 10,000. (The earlier target, Dagster within
   1.25x of standalone, issue 5, is printed too.) Runs alternate (standalone, Dagster, no-op)
   and medians are compared, as is each round's own ratio (less exposed to other load on the machine).
   Each run is split where dd's code starts (``TimedResource``, the real resource timed):
   before the body (run creation with its planned events, run and step start, checkpoint
   read), the body (the asset asking for its row groups until the last is recorded: generation
   and bookkeeping overlap only here), after (check evaluation, step and run end); with the
   run process's CPU in the body and its children's (the workers). From those, the same run
   prints the floor on this machine: the no-op's time before and after its body + max(its body,
   (its body's CPU + the workers' CPU) / cores, standalone). Nothing of dd can run before the
   body, and the run's bookkeeping is serial in one process.
   What is before the body: on OSS storage a range run writes one "materialization planned"
   event per partition (Dagster's ``RunDomain._log_asset_planned_events``, in run creation;
   ~7-8 ms each on SQLite here, ~0.7-0.8 s per 100 row groups, each a run-shard and an index
   write on fresh connections; DAGSTER_EVENT_BATCH_SIZE does not batch them on SQLite, whose
   ``store_event_batch`` is a loop). ``--subset-planned-events`` measures the same run with
   Dagster's DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS, one planned event per run: in
   1.13 the partition status cache still finds in-progress and failed partitions by the
   planned events' partition column (``get_latest_asset_partition_materialization_attempts_
   without_materializations``), so it costs the UI those statuses; dd does not set it.
   So at 10,000-row groups, where the limit is standalone, the floor is already above 1.05x
   (planned events alone are ~0.7 s beside a ~2-4 s standalone run), and the body's
   bookkeeping CPU shares the cores with generation. At 1,000-row groups the floor is the
   no-op itself (its body, ~0.9 s of serial event writes, outlasts generation); the rest is
   the run process waiting for a core beside its workers (and other processes on the machine).
   The run process's own CPU in the body is the same within ~0.05 s in both runs (cProfile:
   dd's code ~0.25 ms per row group; the same gen-2 collections), the no-op yields the same
   metadata, tags and log lines, and neither reads files per row group. Niced workers (10)
   gave 1-5% in paired runs, within the noise; not done.
2. Reading the latest checkpoint of every partition of an asset with 10,000 materialized
   partitions (one indexed query), as every row-group run does. Target: under 1 s on SQLite.
   Then again after deleting the tag rows of ``--untagged`` of them (default 1,000), as a run
   killed between a materialization and its tag rows on PostgreSQL leaves them: those are read
   from their materialization records (batched).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, fields
from pathlib import Path
from resource import RUSAGE_CHILDREN, getrusage

import dagster as dg
import sqlalchemy as sa
from dagster import DagsterEventType
from measure import run_measured

from dd_core.orchestration import ProducedRowGroup
from dd_dagster import DagsterDataset, DataDesignerResource, build_dataset_definitions, register_partitions
from dd_dagster.checkpoints import DATA_VERSION_TAG, latest_records, row_group_version
from dd_dagster.dagster_internals import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

CONFIG = Path(__file__).resolve().parents[1] / "examples" / "customers.yaml"
WORKLOAD = Path(__file__).resolve().parent / "workloads" / "dd_generate.py"
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def standalone(row_groups: int, out: Path, rows: int, workers: int) -> float:
    command = [
        sys.executable,
        str(WORKLOAD),
        str(CONFIG),
        "--num-records",
        str(row_groups * rows),
        "--buffer-size",
        str(rows),
        "--out",
        str(out),
        "--workers",
        str(workers),
    ]
    return run_measured(command)["seconds"]


def through_dagster(row_groups: int, out: Path, home: Path, rows: int, workers: int) -> RunTimes:
    resource = TimedResource(artifact_path=str(out), workers=workers)
    defs = build_dataset_definitions(CONFIG, num_records=row_groups * rows, buffer_size=rows, resource=resource)
    return _run_range(
        defs.resolve_job_def("customers_row_groups_job"), DagsterDataset.create(CONFIG, row_groups * rows, rows), home
    )


def no_op_dagster(row_groups: int, home: Path, rows: int) -> RunTimes:
    resource = NothingMadeResource(artifact_path=str(home / "unused"))
    defs = build_dataset_definitions(CONFIG, num_records=row_groups * rows, buffer_size=rows, resource=resource)
    return _run_range(
        defs.resolve_job_def("customers_row_groups_job"), DagsterDataset.create(CONFIG, row_groups * rows, rows), home
    )


@dataclass
class RunTimes:
    """One run: its wall time, and where it went."""

    seconds: float
    #: From the start of the run until the asset asks for its row groups: run creation (with
    #: its planned events), run and step start, checkpoint read, resume plan. No generation
    #: can run yet (dd's code starts at the end of it).
    before_body: float
    #: From then until the last row group is recorded (generation and bookkeeping overlap).
    body: float
    #: The rest: the check evaluation, step and run end.
    after_body: float
    #: CPU seconds of the run's own process in the body, and of its children (the workers).
    body_cpu: float
    children_cpu: float
    #: The run's "materialization planned" events (one per partition) and their writing time.
    planned_events: int
    planned_s: float


def _run_range(job: dg.JobDefinition, dataset: DagsterDataset, home: Path) -> RunTimes:
    """One in-process run over every row group, on a fresh SQLite instance on disk."""
    home.mkdir(parents=True)
    with dg.instance_for_test(temp_dir=str(home)) as instance:
        register_partitions(instance, dataset)
        tags = {
            ASSET_PARTITION_RANGE_START_TAG: dataset.partition_keys[0],
            ASSET_PARTITION_RANGE_END_TAG: dataset.partition_keys[-1],
        }
        _BODY.clear()
        children = _children_cpu()
        start = time.perf_counter()
        result = job.execute_in_process(instance=instance, tags=tags, run_config=QUIET)
        seconds = time.perf_counter() - start
        assert result.success and len(result.get_asset_materialization_events()) == len(dataset.partition_keys)
        planned = [
            e.timestamp
            for e in instance.all_logs(result.run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION_PLANNED)
        ]
    (body_start, cpu_start), (body_end, cpu_end) = _BODY["start"], _BODY["end"]
    return RunTimes(
        seconds=seconds,
        before_body=body_start - start,
        body=body_end - body_start,
        after_body=start + seconds - body_end,
        body_cpu=cpu_end - cpu_start,
        children_cpu=_children_cpu() - children,
        planned_events=len(planned),
        # An event's timestamp is taken before it is written: the span covers n - 1 writes.
        planned_s=(max(planned) - min(planned)) * len(planned) / (len(planned) - 1) if len(planned) > 1 else 0.0,
    )


def _children_cpu() -> float:
    usage = getrusage(RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


#: When the asset asked for its row groups and when the last was handed back (the asset
#: records each before asking for the next), as (wall, process CPU); one run at a time.
_BODY: dict[str, tuple[float, float]] = {}


@contextmanager
def _timed(produced):
    _BODY["start"] = (time.perf_counter(), time.process_time())
    with produced as parts:
        yield _marking_end(parts)


def _marking_end(parts):
    yield from parts
    _BODY["end"] = (time.perf_counter(), time.process_time())


class TimedResource(DataDesignerResource):
    """The real resource, with the body of the run timed (see ``_timed``)."""

    def produce(self, dataset, jobs):
        return _timed(super().produce(dataset, jobs))


class NothingMadeResource(DataDesignerResource):
    """The real resource, except that its row groups come from a producer that makes nothing:
    each job is handed back at once as if written. The run then goes through the real asset
    (checkpoint read, resume plan, log lines, the same metadata and tags, the check evaluation
    at the end): Dagster's side of a run alone."""

    def produce(self, dataset, jobs):
        def parts():
            for job in jobs:
                info = dataset.identity.info(job.index, job.num_rows, job.num_rows)
                yield ProducedRowGroup(info, {}, 0.0, path=job.path, sha256=f"{job.index:064x}")

        return _timed(nullcontext(parts()))


def _median_read(instance, key, keys) -> float:
    runs = []
    for _ in range(3):
        start = time.perf_counter()
        records = latest_records(instance, key, keys)
        runs.append(time.perf_counter() - start)
    assert len(records) == len(keys)
    return statistics.median(runs)


def checkpoint_read(partitions: int, untagged: int, home: Path) -> tuple[float, float, float]:
    key = dg.AssetKey(["bench_row_groups"])
    keys = [f"{i:05d}" for i in range(partitions)]
    home.mkdir(parents=True)
    with dg.instance_for_test(temp_dir=str(home)) as instance:
        start = time.perf_counter()
        for k in keys:
            version = row_group_version("sha256:" + "ab" * 32, 1000, 1000, 1000, f"{int(k):016x}")
            instance.report_runless_asset_event(
                dg.AssetMaterialization(
                    asset_key=key, partition=k, metadata={"num_rows": 1000}, tags={DATA_VERSION_TAG: version}
                )
            )
        built = time.perf_counter() - start
        read = _median_read(instance, key, keys)
        ids = instance.get_latest_storage_id_by_partition(
            key, DagsterEventType.ASSET_MATERIALIZATION, partitions=set(keys[:untagged])
        )
        with instance.event_log_storage.index_connection() as conn:
            conn.execute(
                sa.text(f"DELETE FROM asset_event_tags WHERE event_id IN ({', '.join(map(str, ids.values()))})")
            )
        return read, _median_read(instance, key, keys), built


def _median(runs: list[RunTimes]) -> RunTimes:
    return RunTimes(*(statistics.median(getattr(r, f.name) for r in runs) for f in fields(RunTimes)))


def _print_floor(plain: float, dagster: RunTimes, noop: RunTimes, limit: float, cores: int) -> None:
    """Where the run's time goes, and the least it could take on this machine: nothing of dd
    runs before the body, and in the body the run's own bookkeeping (serial, in one process)
    and generation share the cores."""
    for name, run in (("row-group asset", dagster), ("no-op asset", noop)):
        print(
            f"  {name + ':':17s} before dd's code {run.before_body:5.2f} s ({run.planned_events} planned events: {run.planned_s:4.2f} s), "
            f"body {run.body:5.2f} s (CPU: run {run.body_cpu:4.2f} s, workers {run.children_cpu:4.2f} s), after {run.after_body:4.2f} s"
        )
    shared = (noop.body_cpu + dagster.children_cpu) / cores
    floor = noop.before_body + max(noop.body, shared, plain) + noop.after_body
    print(
        f"  floor on {cores} core(s): the no-op's time before and after its body + max(its body {noop.body:.2f} s, "
        f"(its body's CPU + the workers' CPU) / {cores} = {shared:.2f} s, standalone {plain:.2f} s) = {floor:.2f} s "
        f"= {floor / limit:.2f}x of max(standalone, no-op); the row-group asset takes {dagster.seconds / floor:.2f}x its floor"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--row-groups", type=int, default=100)
    ap.add_argument("--checkpoint-partitions", type=int, default=10_000, help="0 skips the checkpoint-read measurement")
    ap.add_argument(
        "--rows-per-group",
        type=int,
        nargs="+",
        default=[1000, 10_000],
        help="rows per row group (targets: 1,000 and 10,000)",
    )
    ap.add_argument(
        "--subset-planned-events",
        action="store_true",
        help="set DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS (see above)",
    )
    ap.add_argument(
        "--workers",
        type=int,
        default=len(os.sched_getaffinity(0)),
        help="worker processes, standalone and in the Dagster run (default: the cores available)",
    )
    ap.add_argument("--repeat", type=int, default=5, help="alternating repetitions; medians are compared")
    ap.add_argument(
        "--untagged", type=int, default=1000, help="partitions whose tag rows are deleted for the second read"
    )
    args = ap.parse_args()
    if args.subset_planned_events:
        os.environ["DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS"] = "true"
    targets = {1000: 1.1, 10_000: 1.05}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for rows in args.rows_per_group:
            plains, dagsters, noops = [], [], []
            for i in range(args.repeat):
                plains.append(standalone(args.row_groups, tmp / f"standalone{rows}-{i}", rows, args.workers))
                dagsters.append(
                    through_dagster(
                        args.row_groups, tmp / f"dagster{rows}-{i}", tmp / f"home{rows}-{i}", rows, args.workers
                    )
                )
                noops.append(no_op_dagster(args.row_groups, tmp / f"noop{rows}-{i}", rows))
            plain, dagster, noop = statistics.median(plains), _median(dagsters), _median(noops)
            print(
                f"{args.row_groups} row groups x {rows:,} rows of customers.yaml, {args.workers} worker(s), median of {args.repeat} alternating runs"
            )
            print(
                f"  ddsynth generate (standalone):                 {plain:7.2f} s  ({', '.join(f'{x:.2f}' for x in plains)})"
            )
            planned = "one planned event per run" if args.subset_planned_events else "one planned event per partition"
            print(
                f"  row-group asset, one in-process run ({planned}): {dagster.seconds:7.2f} s  ({', '.join(f'{x.seconds:.2f}' for x in dagsters)})"
            )
            print(
                f"  no-op asset, same materializations, nothing generated (Dagster's own limit): {noop.seconds:7.2f} s  ({', '.join(f'{x.seconds:.2f}' for x in noops)})"
            )
            limit = max(plain, noop.seconds)
            ratio, target = dagster.seconds / limit, targets.get(rows)
            verdict = (
                f"target <= {target}x: {'met' if ratio <= target else 'NOT met'}"
                if target
                else "no target at this size"
            )
            print(
                f"  Dagster / max(standalone, no-op): {ratio:.2f}x ({verdict}); Dagster / standalone: {dagster.seconds / plain:.2f}x (issue 5's target <= 1.25x)"
            )
            # The three runs of a round ran one after another: their ratio shares the machine's load of the moment.
            paired = [d.seconds / max(p, n.seconds) for p, d, n in zip(plains, dagsters, noops)]
            print(
                f"  the same ratio per round (paired runs): median {statistics.median(paired):.2f}x ({', '.join(f'{x:.2f}' for x in paired)})"
            )
            _print_floor(plain, dagster, noop, limit, len(os.sched_getaffinity(0)))
        if not args.checkpoint_partitions:
            return
        read, fallback, built = checkpoint_read(args.checkpoint_partitions, args.untagged, tmp / "checkpoints")
        print(
            f"checkpoint read of {args.checkpoint_partitions:,} partitions (SQLite, built in {built:.0f} s): {read * 1000:.0f} ms "
            f"(target < 1 s: {'met' if read < 1 else 'NOT met'})"
        )
        print(
            f"  the same with {args.untagged:,} of them without tag rows (read from their records): {fallback * 1000:.0f} ms"
        )


if __name__ == "__main__":
    main()
