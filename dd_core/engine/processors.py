"""Apply the config's processors to a generated table."""

from __future__ import annotations

import pyarrow as pa

from dd_core.config import DatasetConfig
from dd_core.config.processors import DropColumnsProcessor, RenameColumnsProcessor


def apply_processors(config: DatasetConfig, table: pa.Table) -> pa.Table:
    for processor in config.processors:
        if isinstance(processor, DropColumnsProcessor):
            table = table.drop_columns(processor.columns)
        elif isinstance(processor, RenameColumnsProcessor):
            table = table.rename_columns(processor.apply_to_names(table.column_names))
    return table
