"""dd: resumable synthetic data generation in row groups."""

from dd_core.config import DatasetConfig, load_config
from dd_core.engine import apply_processors, generate_row_group
from dd_core.errors import (
    DatasetDamagedError,
    DatasetLockedError,
    DDConfigError,
    DDError,
    GenerationError,
    ResumeConflictError,
)
from dd_core.fingerprint import fingerprint
from dd_core.interface.api import DatasetResult, generate, load_dataset, preview
from dd_core.resume import ResumeMode

__all__ = [
    "DDConfigError",
    "DDError",
    "DatasetConfig",
    "DatasetDamagedError",
    "DatasetLockedError",
    "DatasetResult",
    "GenerationError",
    "ResumeConflictError",
    "ResumeMode",
    "apply_processors",
    "fingerprint",
    "generate",
    "generate_row_group",
    "load_config",
    "load_dataset",
    "preview",
]
