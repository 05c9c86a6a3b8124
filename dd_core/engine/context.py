"""What a column generator sees: the row group's coordinates and the columns made so far."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from dd_core.config.render_limits import DEFAULT_LIMITS, RenderLimits
from dd_core.engine.rng import stream


@dataclass
class RowGroupContext:
    seed: int
    index: int
    num_rows: int
    #: Global position of the row group's first row (index * buffer_size).
    row_offset: int
    #: Per-cell time and output limits of template rendering (the config's ``render_limits``).
    render_limits: RenderLimits = DEFAULT_LIMITS
    columns: dict[str, pa.Array] = field(default_factory=dict)
    #: datetime/timedelta columns as datetime64[s], whatever their output format.
    timestamps: dict[str, np.ndarray] = field(default_factory=dict)
    _python: dict[str, list] = field(default_factory=dict)

    def rng(self, column: str, purpose: str = "") -> np.random.Generator:
        return stream(self.seed, self.index, column, purpose)

    def python_values(self, name: str) -> list:
        """A column as Python objects, converted once and shared by all templates."""
        if name not in self._python:
            self._python[name] = self.columns[name].to_pylist()
        return self._python[name]
