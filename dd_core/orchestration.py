"""dd_core for orchestrators (dd_dagster and the like): row-group jobs and their producer,
resume planning from an orchestrator's own checkpoints, claims, and the self-describing files.

End users need only ``dd_core`` (configs, ``generate``, ``preview``, ``resume_dataset``). An
orchestrator decides which row groups to make (``plan_resume`` with ``scope="asset"`` over its
own records), checks that every model answers (``reach_models``), makes them (``produce_row_groups``: pipelined, in worker processes, each file
written crash-safely and claimed so parallel runs never make one twice), checks what it finds
(``RowGroupIdentity.finished_file``) and combines them (``combine_row_groups``).
"""

from __future__ import annotations

from dd_core.engine import apply_processors
from dd_core.engine.in_process import run_row_group
from dd_core.engine.jobs import ProducedRowGroup, RowGroupJob, identity_of
from dd_core.engine.llm.cost import Spend
from dd_core.engine.llm.probe import reach_models
from dd_core.engine.llm.runtime import LLMRuntime, ModelOverride
from dd_core.engine.llm.usage import ModelUsage, merge_usage
from dd_core.engine.pipeline import produce_row_groups
from dd_core.engine.row_group import RowGroupResult
from dd_core.engine.schema import ColumnInfo, column_schema
from dd_core.engine.worker_count import worker_count
from dd_core.interface.combine import CombinedFile, combine_row_groups
from dd_core.interface.dataset_card import CardFacts
from dd_core.interface.dataset_readers import read_arrow, read_pandas, scan_polars
from dd_core.interface.hub_push import PushResult, push_files
from dd_core.resume import (
    Checkpoint,
    Found,
    FoundState,
    ResumePlan,
    RowGroupSizes,
    StaleRowGroupError,
    plan_resume,
    row_group_sizes,
)
from dd_core.storage.acceptance import row_group_acceptance
from dd_core.storage.filesystems import StoragePath, storage_path
from dd_core.storage.row_group_files import RowGroupIdentity, RowGroupInfo, read_info, read_table, strip_dd_metadata
from dd_core.storage.spend import row_group_spend

__all__ = [
    "CardFacts",
    "Checkpoint",
    "ColumnInfo",
    "CombinedFile",
    "Found",
    "FoundState",
    "LLMRuntime",
    "ModelOverride",
    "ModelUsage",
    "ProducedRowGroup",
    "PushResult",
    "ResumePlan",
    "RowGroupIdentity",
    "RowGroupInfo",
    "RowGroupJob",
    "RowGroupResult",
    "RowGroupSizes",
    "Spend",
    "StaleRowGroupError",
    "StoragePath",
    "apply_processors",
    "column_schema",
    "combine_row_groups",
    "identity_of",
    "merge_usage",
    "plan_resume",
    "produce_row_groups",
    "push_files",
    "reach_models",
    "read_arrow",
    "read_info",
    "read_pandas",
    "read_table",
    "row_group_acceptance",
    "row_group_spend",
    "row_group_sizes",
    "run_row_group",
    "scan_polars",
    "storage_path",
    "strip_dd_metadata",
    "worker_count",
]
