"""The columns a config produces, known before anything is generated: name, Arrow type, and
how each is made.

Types come from the engine itself, not from a second table of rules: the columns drawn for
the whole row group are made for one row, and the row-wise ones (LLM columns and the
expressions that read them) declare their type; then they are the types a Parquet file of
them reads back with.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq

from dd_core.config import ConfigSource, DatasetConfig, load_config
from dd_core.config.columns import ExpressionColumn
from dd_core.config.describe import describe_generator
from dd_core.config.processors import DropColumnsProcessor, RenameColumnsProcessor
from dd_core.config.validation_columns import ValidationColumn
from dd_core.engine.expressions import expression_type
from dd_core.engine.llm.cells import arrow_type
from dd_core.engine.post_stage import VALIDATION_TYPE
from dd_core.engine.row_group import vector_stage


@dataclass(frozen=True)
class ColumnInfo:
    name: str
    type: pa.DataType
    #: How the column is made, e.g. ``uniform int in [0, 100]`` (see ``dd_core.config.describe``).
    generator: str
    #: The config's own ``description`` of the column, if any.
    description: str | None = None


def column_schema(config: ConfigSource, *, processed: bool = True) -> list[ColumnInfo]:
    """Every output column in order: of the finished dataset (``processed``), or of a row
    group as generated (before processors)."""
    config = load_config(config)
    types = _types(config)
    columns = [
        ColumnInfo(name, types[name], describe_generator(config, name), config.producers[name].description)
        for name in config.generated_names
    ]
    return _after_processors(config, columns) if processed else columns


def _types(config: DatasetConfig) -> dict[str, pa.DataType]:
    """Types as stored: Parquet has no second-resolution timestamps, so files read back as ms."""
    ctx = vector_stage(config, 0, 1, 1)
    types = {name: array.type for name, array in ctx.columns.items()}
    for col in config.columns:
        if isinstance(col, ValidationColumn):
            types[col.name] = VALIDATION_TYPE
        elif col.name in config.rowwise_names or col.name in config.post_names:
            types[col.name] = expression_type(col) if isinstance(col, ExpressionColumn) else arrow_type(col)
    buffer = pa.BufferOutputStream()
    pq.write_table(pa.schema(list(types.items())).empty_table(), buffer)
    stored = pq.read_schema(pa.BufferReader(buffer.getvalue()))
    return dict(zip(stored.names, stored.types))


def _after_processors(config: DatasetConfig, columns: list[ColumnInfo]) -> list[ColumnInfo]:
    for processor in config.processors:
        if isinstance(processor, DropColumnsProcessor):
            columns = [c for c in columns if c.name not in processor.columns]
        elif isinstance(processor, RenameColumnsProcessor):
            columns = [
                ColumnInfo(processor.columns[c.name], c.type, f"{c.generator} (renamed from {c.name!r})", c.description)
                if c.name in processor.columns
                else c
                for c in columns
            ]
    return columns
