"""The generation engine: row groups as pure functions of (config, index)."""

from dd_core.engine.in_process import generate_row_group
from dd_core.engine.processors import apply_processors

__all__ = ["apply_processors", "generate_row_group"]
