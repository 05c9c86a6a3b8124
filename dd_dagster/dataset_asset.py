"""The combined dataset asset: every row group named by the latest materializations, streamed
through the processors into one parquet file, with blocking checks on completeness."""

# No `from __future__ import annotations`: Dagster reads the asset function's annotations.
import json

import dagster as dg
import pyarrow as pa

from dd_core import apply_processors, read_table, strip_dd_metadata, write_streamed
from dd_dagster.checkpoints import latest_records
from dd_dagster.dataset import DagsterDataset
from dd_dagster.resource import DataDesignerResource

CURRENT_CHECK = "row_groups_current"
ROW_COUNT_CHECK = "row_count_matches"
PREVIEW_ROWS = 10


def build_dataset_asset(dataset: DagsterDataset, spec: dg.AssetSpec, row_groups_key: dg.AssetKey) -> dg.AssetsDefinition:
    spec = spec.replace_attributes(deps=[*spec.deps, dg.AssetDep(row_groups_key)], code_version=dataset.config_hash)
    checks = [
        dg.AssetCheckSpec(CURRENT_CHECK, asset=spec.key, blocking=True, description="Every registered row group is materialized under the current config fingerprint."),
        dg.AssetCheckSpec(ROW_COUNT_CHECK, asset=spec.key, blocking=True, description="Rows equal the target minus the rows dropped for failed LLM cells."),
    ]

    @dg.multi_asset(name=f"{dataset.name}_dataset", specs=[spec], check_specs=checks)
    def combined(context: dg.AssetExecutionContext, data_designer: DataDesignerResource):
        return combine(context, dataset, data_designer.artifact_path, row_groups_key)

    return combined


def combine(context: dg.AssetExecutionContext, dataset: DagsterDataset, artifact_path: str, row_groups_key: dg.AssetKey) -> dg.MaterializeResult:
    records = latest_records(context.instance, row_groups_key, dataset.partition_keys)
    ordered = [records[k] for k in dataset.partition_keys if k in records]
    if not ordered:
        raise dg.Failure(description=f"no row group of {dataset.name} is materialized yet; materialize {row_groups_key.to_user_string()} first")
    paths = [dataset.row_group_path(artifact_path, dataset.index(rec.partition_key), rec.checkpoint) for rec in ordered]
    tables = (apply_processors(dataset.config, strip_dd_metadata(read_table(path))) for path in paths)
    first = next(tables)
    path = dataset.combined_path(artifact_path)
    preview = first.slice(0, PREVIEW_ROWS)
    rows = write_streamed(path, _chain(first, tables), first.schema)
    stale = [k for k in dataset.partition_keys if not _current(records.get(k), dataset, dataset.index(k))]
    dropped = sum(rec.checkpoint.requested_rows - rec.num_rows for rec in ordered)
    expected = dataset.num_records - dropped
    context.log.info(f"combined {len(ordered)} row groups ({rows} rows) into {path}")
    return dg.MaterializeResult(
        metadata={
            "path": dg.MetadataValue.path(str(path)),
            "dagster/row_count": rows,
            "dagster/column_schema": dg.TableSchema(columns=[dg.TableColumn(f.name, str(f.type)) for f in first.schema]),
            "preview": _preview(preview),
            "config_hash": dataset.config_hash,
            "row_groups": len(ordered),
            "dropped_rows": dropped,
        },
        check_results=[
            dg.AssetCheckResult(
                check_name=CURRENT_CHECK,
                passed=not stale,
                metadata={"stale_or_missing": len(stale), "first_stale_or_missing": ", ".join(stale[:20]) or "none"},
            ),
            dg.AssetCheckResult(check_name=ROW_COUNT_CHECK, passed=rows == expected, metadata={"rows": rows, "expected": expected, "dropped_rows": dropped}),
        ],
    )


def _chain(first, rest):
    yield first
    yield from rest


def _current(record, dataset: DagsterDataset, index: int) -> bool:
    if record is None:
        return False
    cp = record.checkpoint
    return (cp.config_hash, cp.requested_rows, cp.buffer_size) == (dataset.config_hash, dataset.sizes[index], dataset.buffer_size)


def _preview(table: pa.Table) -> dg.MetadataValue:
    """The first rows as a table; nested values (structs, lists) shown as JSON text."""
    columns = [dg.TableColumn(f.name, "string" if pa.types.is_nested(f.type) else str(f.type)) for f in table.schema]
    records = [
        dg.TableRecord({k: v if isinstance(v, (str, int, float, bool)) or v is None else json.dumps(v, default=str) for k, v in row.items()})
        for row in table.to_pylist()
    ]
    return dg.MetadataValue.table(records, dg.TableSchema(columns=columns))
