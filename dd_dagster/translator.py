"""How a dataset becomes asset specs; subclass and override ``get_asset_spec`` to change keys,
groups, owners, tags or descriptions (one override point, as in dagster-dbt and dagster-sling).

The default keys are ``<name>_row_groups`` (partitioned) and ``<name>`` (combined): the
lineage graph labels a node with the last part of its key, so every dataset's row-group asset
reads as its own. Both specs carry definition metadata (see ``dd_dagster.metadata``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import dagster as dg

from dd_dagster.dataset import DagsterDataset
from dd_dagster.metadata import definition_metadata

KINDS = {"parquet"}


@dataclass(frozen=True)
class DatasetAssetProps:
    dataset: DagsterDataset
    #: "row_groups": the partitioned asset (one partition per row group); "dataset": the combined one.
    role: Literal["row_groups", "dataset"]


class DDDatasetTranslator:
    def get_asset_spec(self, props: DatasetAssetProps) -> dg.AssetSpec:
        ds = props.dataset
        about = f"{ds.config.description.strip()}\n\n" if ds.config.description else ""
        source = f" from `{ds.config_path.name}`" if ds.config_path else ""
        if props.role == "row_groups":
            return dg.AssetSpec(
                key=dg.AssetKey([f"{ds.name}_row_groups"]),
                group_name=ds.name,
                description=(
                    f"{about}Row groups of **{ds.name}**{source}: {ds.num_row_groups:,} partitions (`{ds.key_range}`) of up to "
                    f"{ds.buffer_size:,} records, one row group each. The code version is the config fingerprint: after a change "
                    f"that alters the data, the check `row_groups_current` fails and lists the stale row groups, and the sensor "
                    f"`{ds.name}_regenerate_stale` regenerates exactly those (turn it on under Automation)."
                ),
                kinds=KINDS,
                tags={"dd/dataset": ds.name},
                metadata=definition_metadata(ds, processed=False),
            )
        return dg.AssetSpec(
            key=dg.AssetKey([ds.name]),
            group_name=ds.name,
            description=(
                f"{about}**{ds.name}**{source}: all {ds.num_records:,} records in one parquet file, processors applied. Built only "
                f"when every row group is current; otherwise it fails before writing and names the row groups to regenerate."
            ),
            kinds=KINDS,
            tags={"dd/dataset": ds.name},
            metadata=definition_metadata(ds, processed=True),
        )
