"""How a dataset becomes asset specs; subclass and override ``get_asset_spec`` to change keys,
groups, owners, tags or descriptions (one override point, as in dagster-dbt and dagster-sling)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import dagster as dg

from dd_dagster.dataset import DagsterDataset


@dataclass(frozen=True)
class DatasetAssetProps:
    dataset: DagsterDataset
    #: "row_groups": the partitioned asset (one partition per row group); "dataset": the combined one.
    role: Literal["row_groups", "dataset"]


class DDDatasetTranslator:
    def get_asset_spec(self, props: DatasetAssetProps) -> dg.AssetSpec:
        ds = props.dataset
        columns = ", ".join(ds.config.output_names)
        if props.role == "row_groups":
            return dg.AssetSpec(
                key=dg.AssetKey([ds.name, "row_groups"]),
                group_name=ds.name,
                description=f"{ds.name}: {len(ds.sizes)} row groups of up to {ds.buffer_size} records (one partition each). Columns: {columns}",
                kinds={"parquet"},
                tags={"dd/dataset": ds.name},
            )
        return dg.AssetSpec(
            key=dg.AssetKey([ds.name]),
            group_name=ds.name,
            description=f"{ds.name}: all {ds.num_records} records combined, processors applied. Columns: {columns}",
            kinds={"parquet"},
            tags={"dd/dataset": ds.name},
        )
