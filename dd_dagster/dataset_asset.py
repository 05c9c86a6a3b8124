"""The combined dataset asset: every row group streamed through the processors into one
parquet file, with a blocking check on its row count.

It refuses before writing anything while any row group is stale, missing or unreadable: a
combined file sits only under the fingerprint all its row groups were made with (after a
config change, Dagster's "Materialize unsynced" selects this asset alone, and must not file
the old row groups under the new config).
"""

# No `from __future__ import annotations`: Dagster reads the asset function's annotations.
import time
from dataclasses import dataclass

import dagster as dg

from dd_core.orchestration import CardFacts, combine_row_groups, push_files
from dd_dagster.checkpoints import latest_materializations
from dd_dagster.checks import regenerate_hint
from dd_dagster.dataset import DagsterDataset
from dd_dagster.metadata import acceptance_rate, preview, summed, table_schema, total_cost, usage_entries
from dd_dagster.status import RowGroupStatus

ROW_COUNT_CHECK = "row_count_matches"


@dataclass(frozen=True)
class HubTarget:
    """Where each materialization of the combined dataset is also published (``ddsynth push``'s
    repo, visibility, branch and license); the token comes from ``HF_TOKEN``."""

    repo_id: str
    private: bool = False
    revision: str | None = None
    license: str | None = None


def build_dataset_asset(
    dataset: DagsterDataset,
    spec: dg.AssetSpec,
    row_groups_key: dg.AssetKey,
    resource_key: str,
    hub: HubTarget | None = None,
) -> dg.AssetsDefinition:
    spec = spec.replace_attributes(deps=[*spec.deps, dg.AssetDep(row_groups_key)], code_version=dataset.config_hash)
    checks = [
        dg.AssetCheckSpec(
            ROW_COUNT_CHECK,
            asset=spec.key,
            blocking=True,
            description="Rows equal the target minus the rows dropped for failed LLM cells.",
        )
    ]

    @dg.multi_asset(
        name=f"{dataset.name}_dataset", specs=[spec], check_specs=checks, required_resource_keys={resource_key}
    )
    def combined(context: dg.AssetExecutionContext):
        return combine(context, dataset, getattr(context.resources, resource_key).artifact_path, row_groups_key, hub)

    return combined


def combine(
    context: dg.AssetExecutionContext,
    dataset: DagsterDataset,
    artifact_path: str,
    row_groups_key: dg.AssetKey,
    hub: HubTarget | None = None,
) -> dg.MaterializeResult:
    started = time.perf_counter()
    status = RowGroupStatus.read(context.instance, dataset, row_groups_key)
    if not status.complete:
        raise _refusal(dataset, status, f"{status.summary()}.")
    indices = range(dataset.num_row_groups)
    paths = [dataset.row_group_path(artifact_path, i) for i in indices]
    unreadable = [i for i, path in zip(indices, paths) if not dataset.has_finished_file(path, i)]
    if unreadable:
        raise _refusal(
            dataset, status, f"{len(unreadable)} row group file(s) are missing or damaged: {status.keys(unreadable)}."
        )

    combined = combine_row_groups(dataset.config, paths, dataset.combined_path(artifact_path))
    path, rows = combined.path, combined.num_rows
    dropped = sum(rec.checkpoint.requested_rows - rec.num_rows for rec in status.records.values())
    expected = dataset.num_records - dropped
    records = latest_materializations(context.instance, row_groups_key, dataset.partition_keys)
    context.log.info(f"combined {len(paths)} row groups ({rows} rows) into {path}")
    usage = summed(usage_entries(r.asset_materialization.metadata) for r in records.values())
    published = {}
    if hub is not None and rows == expected:
        facts = CardFacts(
            name=dataset.name,
            config=dataset.config.resolved_dump(),
            config_hash=dataset.config_hash,
            num_rows=rows,
            row_groups=len(paths),
            dropped_rows=dropped,
            llm_cost_usd=total_cost(usage).get("llm/cost_usd"),
            license=hub.license,
        )
        pushed = push_files([path], hub.repo_id, facts, private=hub.private, revision=hub.revision)
        context.log.info(f"pushed {path} to the Hugging Face Hub: {pushed.commit_url}")
        published = {"hub_commit": dg.MetadataValue.url(pushed.commit_url)}
    return dg.MaterializeResult(
        metadata={
            "path": dg.MetadataValue.path(str(path)),
            "dagster/row_count": rows,
            "dagster/column_schema": table_schema(dataset, processed=True),
            "preview": preview(combined.first),
            "config_hash": dataset.config_hash,
            "row_groups": len(paths),
            "dropped_rows": dropped,
            "duration_s": round(time.perf_counter() - started, 3),
            **usage,
            **total_cost(usage),
            **published,
            **acceptance_rate(usage),
        },
        check_results=[
            dg.AssetCheckResult(
                check_name=ROW_COUNT_CHECK,
                passed=rows == expected,
                metadata={"rows": rows, "expected": expected, "dropped_rows": dropped},
            ),
        ],
    )


def _refusal(dataset: DagsterDataset, status: RowGroupStatus, what: str) -> dg.Failure:
    return dg.Failure(
        description=f"{dataset.name} was not combined (nothing was written): {what} {regenerate_hint(dataset)} Then materialize {dataset.name} again.",
        metadata=status.metadata(),
        allow_retries=False,
    )
