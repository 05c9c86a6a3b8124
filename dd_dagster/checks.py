"""``row_groups_current``: the row-group asset's own check, failing while any row group is
stale or missing, so staleness shows at the asset level (Dagster shows it per partition only).

It can be run on its own (the check's "Execute" button), and every row-group run evaluates it
again when it ends. Not blocking: a run that regenerates some row groups of many must succeed.
"""

# No `from __future__ import annotations`: Dagster inspects the check function's signature.
import dagster as dg

from dd_dagster.dataset import DagsterDataset
from dd_dagster.status import RowGroupStatus

CURRENT_CHECK = "row_groups_current"


def check_description(dataset: DagsterDataset) -> str:
    return (
        f"Every row group of {dataset.name} ({dataset.key_range}) is materialized under the current config fingerprint. "
        "Fails (warning) while some are missing, and (error) while some were made under another config."
    )


def regenerate_hint(dataset: DagsterDataset) -> str:
    return (
        f"Regenerate them: turn on the sensor {dataset.name}_regenerate_stale (it requests exactly the stale and missing "
        f"row groups), or launch the job {dataset.name}_row_groups_job over them (resume: if_possible reuses current ones)."
    )


def check_evaluation(status: RowGroupStatus, asset_key: dg.AssetKey) -> dg.AssetCheckEvaluation:
    """The check's outcome for ``status``, as an event a row-group run can log."""
    severity = dg.AssetCheckSeverity.ERROR if status.stale else dg.AssetCheckSeverity.WARN
    description = status.summary() if status.complete else f"{status.summary()}. {regenerate_hint(status.dataset)}"
    if status.stray:
        description += f" Registered keys that name no row group (valid: {status.dataset.key_range}): {', '.join(status.stray[:20])}."
    return dg.AssetCheckEvaluation(
        asset_key=asset_key,
        check_name=CURRENT_CHECK,
        passed=status.complete,
        metadata=status.metadata(),
        severity=severity,
        description=description,
    )


def build_current_check(dataset: DagsterDataset, asset_key: dg.AssetKey) -> dg.AssetChecksDefinition:
    @dg.asset_check(asset=asset_key, name=CURRENT_CHECK, description=check_description(dataset), blocking=False)
    def row_groups_current(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
        evaluation = check_evaluation(RowGroupStatus.read(context.instance, dataset, asset_key), asset_key)
        return dg.AssetCheckResult(
            passed=evaluation.passed,
            metadata=evaluation.metadata,
            severity=evaluation.severity,
            description=evaluation.description,
        )

    return row_groups_current
