"""Code location of tests/e2e/ui_screenshots.py: two datasets a Dagster user would look at.

DD_UI_DIR holds customers.yaml (samplers) and tickets.yaml (LLM columns, served by the local
OpenAI-compatible server at DD_UI_LLM_BASE_URL), and, when there, accepted.yaml (an acceptance
rule: ``--acceptance``); data goes to DD_UI_DIR/artifacts.
"""

import os
from pathlib import Path

import dagster as dg

from dd_dagster import (
    DataDesignerResource,
    DatasetAssetProps,
    DDDatasetTranslator,
    ModelEndpoint,
    build_dataset_definitions,
)

HERE = Path(os.environ["DD_UI_DIR"])


class _Owned(DDDatasetTranslator):
    def get_asset_spec(self, props: DatasetAssetProps) -> dg.AssetSpec:
        return super().get_asset_spec(props).merge_attributes(owners=["team:synthetic-data"])


_resource = DataDesignerResource(
    artifact_path=str(HERE / "artifacts"), models={"writer": ModelEndpoint(base_url=os.environ["DD_UI_LLM_BASE_URL"])}
)
_accepted = (
    [
        build_dataset_definitions(
            HERE / "accepted.yaml",
            num_records=160,
            buffer_size=20,
            dataset_name="accepted",
            row_groups_per_run=8,
            translator=_Owned(),
        )
    ]
    if (HERE / "accepted.yaml").exists()
    else []
)
defs = dg.Definitions.merge(
    *_accepted,
    build_dataset_definitions(
        HERE / "customers.yaml",
        num_records=4000,
        buffer_size=500,
        row_groups_per_run=4,
        translator=_Owned(),
        resource=_resource,
    ),
    build_dataset_definitions(
        HERE / "tickets.yaml",
        num_records=120,
        buffer_size=20,
        dataset_name="tickets",
        row_groups_per_run=3,
        translator=_Owned(),
    ),
)
