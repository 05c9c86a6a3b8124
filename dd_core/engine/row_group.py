"""``generate_row_group``: a row group as a pure function of (config, index)."""

from __future__ import annotations

import pyarrow as pa

from dd_core.config import ConfigSource, load_config
from dd_core.config.columns import ExpressionColumn, PersonColumn
from dd_core.config.seed_dataset import SeedDatasetColumn
from dd_core.engine.context import RowGroupContext
from dd_core.engine.expressions import expression
from dd_core.engine.person import generate_person
from dd_core.engine.samplers import SAMPLERS
from dd_core.engine.seed_rows import seed_rows

_SINGLE = {**SAMPLERS, PersonColumn: generate_person, ExpressionColumn: expression}


def generate_row_group(config: ConfigSource, index: int, num_rows: int, *, buffer_size: int | None = None) -> pa.Table:
    """Generate row group ``index`` with ``num_rows`` rows, before processors.

    The result depends only on the config, the index and ``buffer_size`` (the dataset's
    row-group size, which fixes where an ordered seed file is read from; default
    ``num_rows``). Fewer rows give a prefix of the same row group.
    """
    config = load_config(config)
    if index < 0 or num_rows < 0:
        raise ValueError(f"index and num_rows must not be negative (got {index}, {num_rows})")
    ctx = RowGroupContext(config.seed, index, num_rows, row_offset=index * (buffer_size or num_rows))
    for col in config.generation_order:
        if isinstance(col, SeedDatasetColumn):
            ctx.columns.update(seed_rows(col, ctx))
        else:
            ctx.columns[col.name] = _SINGLE[type(col)](col, ctx)
    return pa.table({name: ctx.columns[name] for name in config.generated_names})
