"""A finished dataset file (a combined ``dataset.parquet``) from any backend as a pyarrow
Table, a pandas DataFrame or a polars LazyFrame: read in the ranges the reader asks for, never
downloaded whole first."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.parquet as pq

from dd_core.errors import DatasetDamagedError, DDUsageError
from dd_core.storage.cloud_stores import reader_options
from dd_core.storage.filesystems import StoragePath, storage_path

if TYPE_CHECKING:
    import pandas as pd
    import polars as pl


def read_arrow(path: str | StoragePath) -> pa.Table:
    path = storage_path(path)
    try:
        with path.open_arrow() as source:
            return pq.read_table(source)
    except FileNotFoundError as exc:
        raise DatasetDamagedError(f"{path} is missing; materialize the dataset again") from exc
    except (OSError, pa.ArrowException) as exc:
        raise DatasetDamagedError(f"{path} is unreadable ({str(exc)[:200]}); it was not changed") from exc


def read_pandas(path: str | StoragePath) -> pd.DataFrame:
    return read_arrow(path).to_pandas()


def scan_polars(path: str | StoragePath) -> pl.LazyFrame:
    """A lazy scan: polars reads only what the query needs, from the local disk or the object
    store (with the same settings and credentials dd uses)."""
    try:
        import polars as pl  # deferred: an optional, heavy library (pip install ddsynth[polars])
    except ImportError as exc:
        raise DDUsageError("a polars.LazyFrame needs polars: pip install 'ddsynth[polars]'") from exc
    path = storage_path(path)
    if path.is_local:
        return pl.scan_parquet(path.path)
    return pl.scan_parquet(str(path), storage_options=reader_options(path.fs.location), credential_provider=None)
