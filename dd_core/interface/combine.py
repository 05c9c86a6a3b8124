"""A dataset's row groups, in order, through the config's processors into one parquet file.

Used when a standalone run finishes a config with processors, and by an orchestrator's combined
dataset (memory stays at one row group; the file appears whole or not at all).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass

import pyarrow as pa

from dd_core.config import DatasetConfig
from dd_core.engine import apply_processors
from dd_core.storage.dataset_folder import write_streamed
from dd_core.storage.filesystems import StoragePath
from dd_core.storage.row_group_files import read_table, strip_dd_metadata


@dataclass(frozen=True)
class CombinedFile:
    path: StoragePath
    num_rows: int
    #: The first processed row group (for a preview).
    first: pa.Table


def combine_row_groups(config: DatasetConfig, files: Iterable[StoragePath], target: StoragePath) -> CombinedFile:
    """Stream ``files`` (row-group files in row order, at least one) through the processors into
    ``target``, crash-safely."""
    tables = (apply_processors(config, strip_dd_metadata(read_table(path))) for path in files)
    first = next(tables)
    rows = write_streamed(target, itertools.chain([first], tables), first.schema)
    return CombinedFile(target, rows, first)
