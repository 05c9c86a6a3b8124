"""What the asset pages show: definition metadata (known before any run) and the metadata of
materializations (numeric where it changes per row group, so Dagster plots it).

LLM usage is one numeric entry per model and counter, ``llm/<alias>/<counter>``; the combined
asset sums them over its row groups. A new counter is one more name in ``USAGE_COUNTERS``.
``llm/<alias>/cost_usd`` (what the row group was paid for, at the model's configured prices)
appears only for models with a price, and the combined asset adds ``llm/cost_usd``, the total.

With an acceptance rule, each row group also carries ``acceptance/candidates``,
``acceptance/accepted``, ``acceptance/failed`` and ``acceptance/rate`` (numbers, so the asset's
plots show them per partition); the combined asset sums the counts and gives the overall rate.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Iterable, Mapping
from typing import Any

import dagster as dg
import pyarrow as pa

from dd_core.orchestration import column_schema
from dd_dagster.dataset import DagsterDataset

#: ``dd_core.orchestration.ModelUsage`` counters shown per model and summed by the combined asset.
USAGE_COUNTERS = (
    "calls",
    "batch_calls",
    "cache_hits",
    "retries",
    "invalid_replies",
    "failed_cells",
    "throttled",
    "prompt_tokens",
    "completion_tokens",
    "request_seconds",
)
USAGE_PREFIX = "llm/"
ACCEPTANCE_PREFIX = "acceptance/"
ACCEPTANCE_COUNTS = ("candidates", "accepted", "failed")
ACCEPTANCE_RATE = f"{ACCEPTANCE_PREFIX}rate"
COST = "cost_usd"
#: Costs keep micro-dollars (a row group of small calls costs fractions of a cent).
COST_DIGITS = 6
#: Rows in the preview: two fit the UI's metadata column side by side at 1,600 px.
PREVIEW_ROWS = 2
#: Longest text shown in a preview cell (two rows then fit beside the metadata keys).
PREVIEW_CHARS = 32


def table_schema(dataset: DagsterDataset, *, processed: bool) -> dg.TableSchema:
    """Every column with its Arrow type and a description naming its generator."""
    return dg.TableSchema(
        columns=[
            dg.TableColumn(
                c.name, str(c.type), description=f"{c.description} ({c.generator})" if c.description else c.generator
            )
            for c in column_schema(dataset.config, processed=processed)
        ]
    )


def models_text(dataset: DagsterDataset) -> str | None:
    """The models the LLM columns use, one line each: ``writer: anthropic claude-haiku-4-5 (batch)``."""
    lines = [f"{m.alias}: {m.provider} {m.model}{' (batch)' if m.batch else ''}" for m in dataset.config.llm_models]
    return "\n".join(lines) or None


def definition_metadata(dataset: DagsterDataset, *, processed: bool) -> dict[str, Any]:
    """Shown on the asset's overview before any run: columns, the config and its file, the target."""
    metadata: dict[str, Any] = {
        "dagster/column_schema": table_schema(dataset, processed=processed),
        "config": dg.MetadataValue.md(f"```yaml\n{dataset.config_text.rstrip()}\n```"),
        "config_hash": dg.MetadataValue.text(dataset.config_hash),
        "config_hash_version": dg.MetadataValue.text(str(dataset.fingerprint.config_hash_version)),
        "num_records": dg.MetadataValue.text(f"{dataset.num_records:,}"),
        "buffer_size": dg.MetadataValue.text(f"{dataset.buffer_size:,}"),
        "row_groups": dg.MetadataValue.text(f"{dataset.num_row_groups:,} (partition keys {dataset.key_range})"),
        "seed": dg.MetadataValue.text(str(dataset.config.seed)),
    }
    models = models_text(dataset)
    if models is not None:
        metadata["models"] = dg.MetadataValue.text(models)
    if dataset.config_path is not None:
        metadata["dagster/code_references"] = _config_reference(dataset)
    return metadata


def _config_reference(dataset: DagsterDataset) -> dg.CodeReferencesMetadataValue:
    """A link to the config file ("Open in editor" in the UI). Dagster marks code references
    beta; the warning would be printed by every process that loads the code location."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.BetaWarning)
        reference = dg.LocalFileCodeReference(
            file_path=str(dataset.config_path), line_number=1, label=f"{dataset.name} config"
        )
        return dg.CodeReferencesMetadataValue(code_references=[reference])


def usage_metadata(usage: Mapping[str, Mapping[str, Any]]) -> dict[str, float | int]:
    """``{"writer": ModelUsage.to_json()}`` -> ``{"llm/writer/calls": 40, ...}`` (and
    ``llm/writer/cost_usd`` when the usage has a cost: never an estimate)."""
    entries = {
        f"{USAGE_PREFIX}{alias}/{name}": _rounded(counters.get(name, 0))
        for alias, counters in sorted(usage.items())
        for name in USAGE_COUNTERS
    }
    for alias, counters in sorted(usage.items()):
        if "cost_usd" in counters:
            entries[f"{USAGE_PREFIX}{alias}/{COST}"] = round(counters[COST], COST_DIGITS)
    return entries


def total_cost(entries: Mapping[str, float | int]) -> dict[str, float]:
    """``{"llm/cost_usd": total}`` over the models' cost entries (nothing without any)."""
    costs = [value for label, value in entries.items() if label.startswith(USAGE_PREFIX) and label.endswith(f"/{COST}")]
    return {f"{USAGE_PREFIX}{COST}": round(sum(costs), COST_DIGITS)} if costs else {}


def acceptance_metadata(record: Mapping[str, int]) -> dict[str, float | int]:
    """A row group's acceptance record (``dd_core.orchestration.row_group_acceptance``) as numbers."""
    if not record:
        return {}
    entries: dict[str, float | int] = {f"{ACCEPTANCE_PREFIX}{name}": record[name] for name in ACCEPTANCE_COUNTS}
    return {**entries, **acceptance_rate(entries)}


def acceptance_rate(entries: Mapping[str, float | int]) -> dict[str, float]:
    """``{"acceptance/rate": accepted / candidates}`` over summed counts (nothing without a rule)."""
    candidates = entries.get(f"{ACCEPTANCE_PREFIX}candidates")
    if not candidates:
        return {}
    return {f"{ACCEPTANCE_PREFIX}rate": round(entries.get(f"{ACCEPTANCE_PREFIX}accepted", 0) / candidates, 4)}


def usage_entries(metadata: Mapping[str, dg.MetadataValue]) -> dict[str, float | int]:
    """The LLM usage entries and acceptance counts of a materialization's metadata (what a reused
    row group reports again, and what the combined asset sums)."""
    return {
        label: value.value
        for label, value in metadata.items()
        if label.startswith(USAGE_PREFIX) or label.startswith(ACCEPTANCE_PREFIX) and label != ACCEPTANCE_RATE
    }


def summed(parts: Iterable[Mapping[str, float | int]]) -> dict[str, float | int]:
    total: dict[str, float | int] = {}
    for part in parts:
        for label, value in part.items():
            total[label] = total.get(label, 0) + value
    return {
        label: round(v, COST_DIGITS) if label.endswith(f"/{COST}") else _rounded(v)
        for label, v in sorted(total.items())
    }


def _rounded(value: float | int) -> float | int:
    return round(value, 3) if isinstance(value, float) else value


def preview(table: pa.Table) -> dg.MetadataValue:
    """The first rows, turned on their side so they read in the UI's narrow metadata column:
    one line per column (struct fields as their own lines, ``person.email``), one column per
    row; nested values as JSON text, long text cut. (Types are in the column schema.)"""
    table = table.slice(0, PREVIEW_ROWS)
    while any(pa.types.is_struct(f.type) for f in table.schema):
        table = table.flatten()
    rows = [f"row {i}" for i in range(table.num_rows)]
    columns = [dg.TableColumn("column", "string"), *(dg.TableColumn(r, "string") for r in rows)]
    records = [
        dg.TableRecord(
            {"column": field.name, **{r: _cell(v) for r, v in zip(rows, table.column(field.name).to_pylist())}}
        )
        for field in table.schema
    ]
    return dg.MetadataValue.table(records, dg.TableSchema(columns=columns))


#: Larger integers lose digits in the browser (JavaScript numbers): shown as text.
EXACT_IN_BROWSER = 2**53


def _cell(value: Any) -> str | int | float | bool | None:
    if value is None or isinstance(value, bool) or isinstance(value, int) and abs(value) < EXACT_IN_BROWSER:
        return value
    if isinstance(value, float) and math.isfinite(value):
        return value
    text = json.dumps(value, default=str) if isinstance(value, (list, dict)) else str(value)
    text = " ".join(text.split())
    return text if len(text) <= PREVIEW_CHARS else text[: PREVIEW_CHARS - 1] + "…"
