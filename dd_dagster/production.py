"""Producing a run's row groups with dd_core's producer, in worker processes beside the run.

Dagster's bookkeeping is CPU work in the run's process (each row group's materialization is an
event write, ~10 ms on SQLite). ``dd_core.orchestration.produce_row_groups`` makes the row groups in worker
processes beside it, pipelined (with LLM columns the next row groups' requests start while the
current one's slowest replies finish), and hands each back as soon as it is written; so the run
records one row group while the next ones are made, and generation uses the other cores.

Each job carries its row group's claim, so parallel runs of one dataset never make the same row
group twice (the second waits, then reuses the file), and may reuse a finished file found at its
path: one a run killed before reporting it left behind.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field

from dd_core import ResumeMode
from dd_core.orchestration import (
    LLMRuntime,
    ProducedRowGroup,
    RowGroupJob,
    StoragePath,
    produce_row_groups,
    row_group_acceptance,
    row_group_spend,
    worker_count,
)
from dd_dagster.checkpoints import row_group_version
from dd_dagster.dataset import DagsterDataset

#: Below this many row groups to generate, starting worker processes costs more than it saves.
MIN_ROW_GROUPS_FOR_WORKERS = 2


@dataclass(frozen=True)
class RowGroupOutcome:
    """What a row group's materialization reports: made now, or reused."""

    index: int
    path: StoragePath
    num_rows: int
    #: The row group's Dagster data version (see ``checkpoints.row_group_version``).
    data_version: str
    reused: bool
    seconds: float = 0.0
    usage: dict = field(default_factory=dict)
    #: With an acceptance rule: candidates, accepted, failed and budget (see ``row_group_acceptance``).
    acceptance: dict = field(default_factory=dict)

    @classmethod
    def of(cls, dataset: DagsterDataset, part: ProducedRowGroup) -> RowGroupOutcome:
        info = part.info
        version = row_group_version(
            dataset.config_hash, dataset.buffer_size, info.requested_rows, info.num_rows, part.sha256[:16]
        )
        usage = {alias: u.to_json() for alias, u in part.usage.items()}
        for alias, spend in row_group_spend(info.llm_spend).items():  # what this row group was paid for
            if part.reused and alias not in usage:  # a file no run reported: what it says was paid
                usage[alias] = {
                    "calls": spend.get("requests", 0),
                    "prompt_tokens": spend.get("prompt_tokens", 0),
                    "completion_tokens": spend.get("completion_tokens", 0),
                }
            if "cost_usd" in spend and alias in usage:
                usage[alias]["cost_usd"] = spend["cost_usd"]
        acceptance = row_group_acceptance(info.acceptance)
        return cls(part.index, part.path, info.num_rows, version, part.reused, part.seconds, usage, acceptance)


def jobs_for(dataset: DagsterDataset, artifact_path: str, indices: list[int], mode: ResumeMode) -> list[RowGroupJob]:
    """One job per row group to generate: its file and claim under the current fingerprint."""
    return [
        RowGroupJob(
            index,
            dataset.sizes[index],
            dataset.row_group_path(artifact_path, index),
            claim=dataset.claim_path(artifact_path, index),
            reuse_finished=mode is not ResumeMode.NEVER,
        )
        for index in indices
    ]


def produce(
    dataset: DagsterDataset, jobs: list[RowGroupJob], runtime: LLMRuntime, *, beside_run: bool, workers: int | None
) -> AbstractContextManager[Iterator[ProducedRowGroup]]:
    """``jobs``' row groups as each is written (not in order), in ``workers`` processes (None:
    as ``ddsynth generate`` chooses, see ``dd_core.orchestration.worker_count``) beside the run, or in the run's own process. A batch-mode dataset's
    row groups are made in the run's process: they wait for the provider, a worker process would
    only wait too, and inline their batches' progress reaches the run's log (see batch_logs)."""
    if not jobs:
        return nullcontext(iter(()))
    beside_run = beside_run and not dataset.batched and len(jobs) >= MIN_ROW_GROUPS_FOR_WORKERS
    workers = worker_count(dataset.config, sum(job.num_rows for job in jobs), len(jobs), workers) if beside_run else 1
    return produce_row_groups(
        dataset.config, jobs, buffer_size=dataset.buffer_size, llm=runtime, workers=workers, out_of_process=beside_run
    )
