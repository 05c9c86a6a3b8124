"""dd: resumable synthetic data generation in row groups.

The user API: load a config, preview it, generate a dataset (resumably), continue one from its
folder, read it back. Orchestrators (dd_dagster) have their own public module,
``dd_core.orchestration``.

Public names are imported on first use (PEP 562), so ``python -m dd_core.<tool>`` and the
CLI start without loading pandas, pyarrow and Faker they may not need.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "DatasetConfig": "dd_core.config",
    "load_config": "dd_core.config",
    "generate_row_group": "dd_core.engine",
    "DDError": "dd_core.errors",
    "DDConfigError": "dd_core.errors",
    "DDUsageError": "dd_core.errors",
    "StorageError": "dd_core.errors",
    "DatasetDamagedError": "dd_core.errors",
    "DatasetLockedError": "dd_core.errors",
    "GenerationError": "dd_core.errors",
    "ModelEndpointError": "dd_core.errors",
    "ResumeConflictError": "dd_core.errors",
    "Interrupted": "dd_core.interrupts",
    "Fingerprint": "dd_core.fingerprinting",
    "fingerprint": "dd_core.fingerprinting",
    "DatasetResult": "dd_core.interface.api",
    "generate": "dd_core.interface.api",
    "load_dataset": "dd_core.interface.api",
    "preview": "dd_core.interface.api",
    "resume_dataset": "dd_core.interface.api",
    "ModelOverride": "dd_core.engine.llm.runtime",
    "ResumeMode": "dd_core.resume",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'dd_core' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


if TYPE_CHECKING:
    from dd_core.config import DatasetConfig, load_config
    from dd_core.engine import generate_row_group
    from dd_core.engine.llm.runtime import ModelOverride
    from dd_core.errors import (
        DatasetDamagedError,
        DatasetLockedError,
        DDConfigError,
        DDError,
        DDUsageError,
        GenerationError,
        ModelEndpointError,
        ResumeConflictError,
        StorageError,
    )
    from dd_core.fingerprinting import Fingerprint, fingerprint
    from dd_core.interface.api import DatasetResult, generate, load_dataset, preview, resume_dataset
    from dd_core.interrupts import Interrupted
    from dd_core.resume import ResumeMode
