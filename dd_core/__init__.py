"""dd: resumable synthetic data generation in row groups.

Public names are imported on first use (PEP 562), so ``python -m dd_core.<tool>`` and the
CLI start without loading pandas, pyarrow and Faker they may not need.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "DatasetConfig": "dd_core.config",
    "load_config": "dd_core.config",
    "apply_processors": "dd_core.engine",
    "generate_row_group": "dd_core.engine",
    "ColumnInfo": "dd_core.engine.schema",
    "column_schema": "dd_core.engine.schema",
    "DDError": "dd_core.errors",
    "DDConfigError": "dd_core.errors",
    "DDUsageError": "dd_core.errors",
    "StorageError": "dd_core.errors",
    "Interrupted": "dd_core.interrupts",
    "DatasetDamagedError": "dd_core.errors",
    "DatasetLockedError": "dd_core.errors",
    "GenerationError": "dd_core.errors",
    "ResumeConflictError": "dd_core.errors",
    "fingerprint": "dd_core.fingerprinting",
    "DatasetResult": "dd_core.interface.api",
    "generate": "dd_core.interface.api",
    "load_dataset": "dd_core.interface.api",
    "preview": "dd_core.interface.api",
    "resume_dataset": "dd_core.interface.api",
    "ResumeMode": "dd_core.resume",
    # For orchestrators (dd_dagster): row groups, checkpoints and crash-safe files.
    "RowGroupResult": "dd_core.engine.row_group",
    "run_row_group": "dd_core.engine.row_group",
    # Many row groups at once: pipelined, optionally in worker processes.
    "ProducedRowGroup": "dd_core.engine.pipeline",
    "RowGroupJob": "dd_core.engine.pipeline",
    "produce_row_groups": "dd_core.engine.pipeline",
    "worker_count": "dd_core.engine.worker_count",
    "LLMRuntime": "dd_core.engine.llm.runtime",
    "ModelOverride": "dd_core.engine.llm.runtime",
    "ModelUsage": "dd_core.engine.llm.usage",
    "merge_usage": "dd_core.engine.llm.usage",
    "Checkpoint": "dd_core.resume",
    "Found": "dd_core.resume",
    "FoundState": "dd_core.resume",
    "ResumePlan": "dd_core.resume",
    "StaleRowGroupError": "dd_core.resume",
    "plan_resume": "dd_core.resume",
    "row_group_sizes": "dd_core.resume",
    "RowGroupInfo": "dd_core.storage.row_group_files",
    "read_info": "dd_core.storage.row_group_files",
    "read_table": "dd_core.storage.row_group_files",
    "strip_dd_metadata": "dd_core.storage.row_group_files",
    "write_row_group_file": "dd_core.storage.row_group_files",
    "row_group_spend": "dd_core.storage.spend",
    "write_streamed": "dd_core.storage.dataset_folder",
    "StoragePath": "dd_core.storage.filesystems",
    "storage_path": "dd_core.storage.filesystems",
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
    from dd_core.engine import apply_processors, generate_row_group
    from dd_core.errors import DatasetDamagedError, DatasetLockedError, DDConfigError, DDError, DDUsageError, GenerationError, ResumeConflictError, StorageError
    from dd_core.fingerprinting import fingerprint
    from dd_core.interface.api import DatasetResult, generate, load_dataset, preview, resume_dataset
    from dd_core.interrupts import Interrupted
    from dd_core.engine.llm.runtime import LLMRuntime, ModelOverride
    from dd_core.engine.llm.usage import ModelUsage, merge_usage
    from dd_core.engine.worker_count import worker_count
    from dd_core.engine.pipeline import ProducedRowGroup, RowGroupJob, produce_row_groups
    from dd_core.engine.row_group import RowGroupResult, run_row_group
    from dd_core.engine.schema import ColumnInfo, column_schema
    from dd_core.resume import Checkpoint, Found, FoundState, ResumeMode, ResumePlan, StaleRowGroupError, plan_resume, row_group_sizes
    from dd_core.storage.filesystems import StoragePath, storage_path
    from dd_core.storage.dataset_folder import write_streamed
    from dd_core.storage.row_group_files import RowGroupInfo, read_info, read_table, strip_dd_metadata, write_row_group_file
    from dd_core.storage.spend import row_group_spend
