"""The row-group asset: one dynamic partition per row group, resumed from Dagster's records.

A run may cover many row groups (``context.partition_keys``). Their checkpoints are read in one
batched query and dd_core's pure resume planner decides per row group. Reused row groups are
verified and reported first; the others are produced (``DataDesignerResource.produce``:
pipelined, in worker processes) and each is reported as its own materialization the moment
it is written, in the order they finish, with code- and data-version tags so Dagster can tell
stale partitions apart.
"""

# No `from __future__ import annotations`: Dagster reads the asset function's annotations
# (config, resources) at definition time.
from collections.abc import Iterable, Iterator
from contextlib import nullcontext
from itertools import chain
from typing import Literal

import dagster as dg
from pydantic import Field

from dd_core import DDConfigError, GenerationError, ModelEndpointError, ResumeConflictError, ResumeMode
from dd_core.orchestration import FoundState, ResumePlan, StaleRowGroupError, plan_resume
from dd_dagster.batch_logs import batch_progress_to
from dd_dagster.checkpoints import (
    CODE_VERSION_TAG,
    DATA_VERSION_TAG,
    found_state,
    latest_materializations,
    latest_records,
)
from dd_dagster.checks import check_evaluation
from dd_dagster.dataset import DagsterDataset
from dd_dagster.metadata import acceptance_metadata, acceptance_rate, models_text, usage_entries, usage_metadata
from dd_dagster.production import RowGroupOutcome, jobs_for
from dd_dagster.resource import DataDesignerResource
from dd_dagster.status import SHOWN_KEYS, RowGroupStatus


class RowGroupsConfig(dg.Config):
    """Run config of the row-group asset, chosen per launch in the launchpad."""

    resume: Literal["never", "always", "if_possible"] = Field(
        default="if_possible",
        description=(
            "What to do with row groups that already have a materialization. if_possible (default): reuse those made under "
            "the current config, regenerate stale or missing ones. always: reuse, and fail on a row group made under another "
            "config. never: regenerate every row group of the run."
        ),
    )


def build_row_groups_asset(
    dataset: DagsterDataset, spec: dg.AssetSpec, row_groups_per_run: int, llm_endpoint: str | None, resource_key: str
) -> dg.AssetsDefinition:
    """``llm_endpoint`` (the model server, if any) names the Dagster concurrency pool the runs
    hold, so the instance can cap parallel runs per model server however they were launched.
    ``resource_key`` names the ``DataDesignerResource`` the runs use."""
    spec = spec.replace_attributes(code_version=dataset.config_hash, skippable=True)

    @dg.multi_asset(
        name=f"{dataset.name}_row_groups",
        specs=[spec],
        partitions_def=dataset.partitions_def,
        backfill_policy=dg.BackfillPolicy.multi_run(max_partitions_per_run=row_groups_per_run),
        pool=dataset.llm_pool(llm_endpoint) if llm_endpoint else None,
        required_resource_keys={resource_key},
    )
    def row_groups(context: dg.AssetExecutionContext, config: RowGroupsConfig):
        resource = getattr(context.resources, resource_key)
        yield from RowGroupMaterializer(dataset, resource, context).run(
            context.partition_keys, ResumeMode(config.resume)
        )

    return row_groups


class RowGroupMaterializer:
    def __init__(self, dataset: DagsterDataset, resource: DataDesignerResource, context: dg.AssetExecutionContext):
        self.dataset = dataset
        self.resource = resource
        self.artifact_path = resource.artifact_path
        self.context = context
        self.asset_key = context.asset_key
        #: Per reused row group: the LLM usage its earlier materialization recorded.
        self.earlier_usage: dict[int, dict] = {}

    def run(self, partition_keys: list[str], mode: ResumeMode) -> Iterator[dg.AssetMaterialization]:
        ds = self.dataset
        self._check_keys(partition_keys)
        indices = sorted(ds.index(k) for k in partition_keys)
        records = latest_records(self.context.instance, self.asset_key, partition_keys)
        plan = self._plan(mode, found_state(self.context.instance, self.asset_key, records, ds.index), indices)
        reuse = {}
        for index in plan.reuse:
            record = records[ds.partition_key(index)]
            path = ds.row_group_path(self.artifact_path, index, record.checkpoint)
            if ds.has_finished_file(path, index):
                reuse[index] = RowGroupOutcome(index, path, record.num_rows, record.data_version, reused=True)
            else:
                self.context.log.warning(f"row group {index}: {path} is missing or damaged; regenerating it")
        self.earlier_usage = self._earlier_usage(reuse)
        jobs = jobs_for(ds, self.artifact_path, [i for i in indices if i not in reuse], mode)
        self.context.log.info(f"{len(reuse)} row group(s) to reuse, {len(jobs)} to generate (resume={mode.value})")
        if jobs:
            self._reach_models()
        # Each log line is an event Dagster stores (~10 ms on SQLite): report progress about ten times a run.
        every = max(1, len(indices) // 10)
        with (
            batch_progress_to(self.context.log) if ds.batched else nullcontext(),
            self.resource.produce(ds, jobs) as produced,
        ):
            outcomes = chain(reuse.values(), (RowGroupOutcome.of(ds, part) for part in produced))
            for done, outcome in enumerate(self._failing_clearly(outcomes), start=1):
                if done % every == 0 or done == len(indices):
                    how = "reused" if outcome.reused else f"generated in {outcome.seconds:.2f} s"
                    self.context.log.info(
                        f"{done}/{len(indices)} row groups done (row group {outcome.index}: {outcome.num_rows} rows, {how})"
                    )
                yield self._materialization(outcome)
        # The dataset-level check, evaluated again now that these row groups are done.
        self.context.log_event(
            check_evaluation(RowGroupStatus.read(self.context.instance, ds, self.asset_key), self.asset_key)
        )

    def _check_keys(self, partition_keys: list[str]) -> None:
        """Fail before anything else on keys that name no row group (added by hand in the UI, or
        left over from a larger target)."""
        ds = self.dataset
        bad = ds.invalid_keys(partition_keys)
        if bad:
            shown = ", ".join(repr(k) for k in bad[:SHOWN_KEYS]) + (
                f" ... ({len(bad)} in all)" if len(bad) > SHOWN_KEYS else ""
            )
            raise dg.Failure(
                description=(
                    f"partition key(s) {shown} name no row group of {ds.name}: valid keys are {ds.key_range} "
                    f"({ds.num_row_groups} row groups of {ds.num_records:,} records, {ds.key_width} digits). "
                    "Delete the stray partitions; the sensor registers every valid key."
                ),
                metadata={"invalid_keys": ", ".join(bad[:SHOWN_KEYS]), "valid_keys": ds.key_range},
                allow_retries=False,
            )

    def _earlier_usage(self, reuse: dict[int, RowGroupOutcome]) -> dict[int, dict]:
        """The LLM usage the materializations being reused recorded, so a reused row group still
        says what it cost to make (and the combined asset's totals do not drop)."""
        keys = {self.dataset.partition_key(i) for i in reuse}
        records = latest_materializations(self.context.instance, self.asset_key, keys) if keys else {}
        return {self.dataset.index(k): usage_entries(r.asset_materialization.metadata) for k, r in records.items()}

    def _reach_models(self) -> None:
        """Before any row group is started, every model answers (a server that is down or refuses
        the key fails the run at once with dd's message, not after retries)."""
        try:
            spend = self.resource.reach_models(self.dataset)
        except (ModelEndpointError, DDConfigError) as exc:
            raise dg.Failure(description=str(exc)) from exc
        for alias, billed in spend.items():
            self.context.log.info(
                f"model {alias}: the structured-output check sent {billed.requests} request(s) of max_tokens 1 "
                f"({billed.prompt_tokens} prompt and {billed.completion_tokens} completion tokens; not in the asset's "
                "llm spend)"
            )

    @staticmethod
    def _failing_clearly(outcomes: Iterable[RowGroupOutcome]) -> Iterator[RowGroupOutcome]:
        """A row group that fails (its LLM cells) fails the step with dd's message; the row
        groups finished before it have been reported."""
        try:
            yield from outcomes
        except GenerationError as exc:
            raise dg.Failure(description=str(exc)) from exc

    def _plan(self, mode: ResumeMode, found: FoundState, indices: list[int]) -> ResumePlan:
        ds = self.dataset
        location = f"asset {self.asset_key.to_user_string()}"
        try:
            return plan_resume(
                mode,
                found,
                ds.config_hash,
                ds.num_records,
                ds.buffer_size,
                location=location,
                scope="asset",
                row_groups=indices,
            )
        except StaleRowGroupError as exc:
            metadata = {
                "row_group": exc.row_group,
                "stored_config_hash": exc.stored_hash,
                "current_config_hash": exc.current_hash,
            }
            raise dg.Failure(description=str(exc), metadata=metadata, allow_retries=False) from exc
        except (ResumeConflictError, DDConfigError) as exc:
            raise dg.Failure(
                description=str(exc), metadata={"current_config_hash": ds.config_hash}, allow_retries=False
            ) from exc

    def _materialization(self, outcome: RowGroupOutcome) -> dg.AssetMaterialization:
        """Numeric entries only where they change per row group (Dagster plots every number);
        constants are definition metadata, identifiers are text."""
        ds = self.dataset
        index = outcome.index
        metadata = {
            "config_hash": ds.config_hash,
            "config_hash_version": dg.MetadataValue.text(str(ds.fingerprint.config_hash_version)),
            "row_group": dg.MetadataValue.text(ds.partition_key(index)),
            "seed": dg.MetadataValue.text(str(ds.config.seed)),
            "path": dg.MetadataValue.path(str(outcome.path)),
            "reused": outcome.reused,
            "num_rows": outcome.num_rows,
            "dagster/row_count": outcome.num_rows,
            "dropped_rows": ds.sizes[index] - outcome.num_rows,
        }
        if not outcome.reused:
            metadata["duration_s"] = round(outcome.seconds, 3)
        models = models_text(ds)
        if models is not None:
            metadata["models"] = dg.MetadataValue.text(models)
        if outcome.usage or outcome.acceptance:
            metadata.update(usage_metadata(outcome.usage))
            metadata.update(acceptance_metadata(outcome.acceptance))
        else:
            earlier = self.earlier_usage.get(index, {})
            metadata.update({**earlier, **acceptance_rate(earlier)})
        tags = {CODE_VERSION_TAG: ds.config_hash, DATA_VERSION_TAG: outcome.data_version}  # see checkpoints.py
        return dg.AssetMaterialization(
            asset_key=self.asset_key, partition=ds.partition_key(index), metadata=metadata, tags=tags
        )
