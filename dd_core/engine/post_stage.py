"""The post stage: validation columns and what reads them, a batch of rows at a time, once the
rows' other columns (LLM-written ones included) exist."""

from __future__ import annotations

from collections.abc import Callable

import pyarrow as pa

from dd_core.config import DatasetConfig
from dd_core.config.columns import ExpressionColumn
from dd_core.config.validation_columns import ValidationColumn
from dd_core.engine.expressions import compile_renderer, convert_value, expression_type
from dd_core.engine.validators import validate

#: The Arrow type of a validation column.
VALIDATION_TYPE = pa.struct([pa.field("is_valid", pa.bool_()), pa.field("reason", pa.string())])


class PostStage:
    """The config's post columns in generation order."""

    def __init__(self, config: DatasetConfig):
        self.config = config
        self.columns = [c for c in config.generation_order if c.name in config.post_names]
        self.renderers: dict[str, Callable[[dict], str]] = {
            c.name: compile_renderer(c.expr, c.name, "expr", config.render_limits)
            for c in self.columns
            if isinstance(c, ExpressionColumn)
        }

    def __bool__(self) -> bool:
        return bool(self.columns)

    def run(self, columns: dict[str, pa.Array], num_rows: int) -> dict[str, pa.Array]:
        """The post columns of ``num_rows`` rows whose other columns are ``columns`` (by output name)."""
        values: dict[str, list] = {}

        def python(name: str) -> list:
            if name not in values:
                values[name] = columns[name].to_pylist()
            return values[name]

        made: dict[str, pa.Array] = {}
        for col in self.columns:
            reads = sorted(r for refs in col.dependencies().values() for r in refs)
            rows = [dict(zip(reads, row)) for row in zip(*(python(r) for r in reads))] if reads else [{}] * num_rows
            if isinstance(col, ValidationColumn):
                verdicts = validate(col, rows, self.config.render_limits)
                array = pa.array([{"is_valid": v, "reason": r} for v, r in verdicts], VALIDATION_TYPE)
            else:
                render = self.renderers[col.name]
                array = pa.array(
                    [convert_value(render(row), col, i) for i, row in enumerate(rows)], expression_type(col)
                )
            made[col.name] = columns[col.name] = array
        return made
