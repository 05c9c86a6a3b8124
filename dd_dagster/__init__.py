"""Dagster integration of dd: row groups as dynamic partitions, materializations as checkpoints."""

from dd_dagster.automation import register_partitions
from dd_dagster.component import DatasetComponent
from dd_dagster.dataset import DagsterDataset
from dd_dagster.dataset_asset import HubTarget
from dd_dagster.factory import build_dataset_definitions
from dd_dagster.resource import DataDesignerResource, ModelEndpoint
from dd_dagster.row_groups import RowGroupsConfig
from dd_dagster.translator import DatasetAssetProps, DDDatasetTranslator

__all__ = [
    "DDDatasetTranslator",
    "DagsterDataset",
    "DatasetComponent",
    "HubTarget",
    "DataDesignerResource",
    "DatasetAssetProps",
    "ModelEndpoint",
    "RowGroupsConfig",
    "build_dataset_definitions",
    "register_partitions",
]
