"""Rows of a seed file for one row group, as a pure function of (seed, global row offset)."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pyarrow as pa

from dd_core.config.seed_dataset import SeedDatasetColumn
from dd_core.engine.context import RowGroupContext
from dd_core.engine.rng import dataset_stream
from dd_core.storage.seed_files import read_rows


@lru_cache(maxsize=8)
def _permutation(seed: int, column: str, length: int, epoch: int) -> np.ndarray:
    return dataset_stream(seed, column, f"permutation-{epoch}").permutation(length)


def seed_rows(col: SeedDatasetColumn, ctx: RowGroupContext) -> dict[str, pa.Array]:
    length = col.seed.num_rows
    rows = np.arange(ctx.row_offset, ctx.row_offset + ctx.num_rows)
    if col.order == "ordered":
        picks = rows % length
    elif col.replace:
        picks = ctx.rng(col.name).integers(0, length, size=ctx.num_rows)
    else:
        # Global row r takes position r % L of the permutation of pass r // L: every file row
        # is used once per pass, and each row group computes its share on its own.
        picks = np.empty(ctx.num_rows, dtype=np.int64)
        epochs = rows // length
        for epoch in np.unique(epochs):
            mask = epochs == epoch
            picks[mask] = _permutation(ctx.seed, col.name, length, int(epoch))[rows[mask] % length]
    chosen = read_rows(col.seed, picks, col.output_names())
    return {name: chosen.column(name).combine_chunks() for name in col.output_names()}
