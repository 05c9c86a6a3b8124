"""Where every row group of a dataset stands, read from Dagster: current, stale, missing.

Dagster marks staleness per partition only (the asset itself stays FRESH), so dd sums it up
for the whole dataset: the ``row_groups_current`` check reports it, the combined asset refuses
to combine until it is clean, and the regeneration sensor and refresh schedule request exactly
the row groups it lists.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import dagster as dg

from dd_dagster.checkpoints import RowGroupRecord, latest_records
from dd_dagster.dataset import DagsterDataset

#: How many keys messages and metadata quote before "...".
SHOWN_KEYS = 20


@dataclass(frozen=True)
class RowGroupStatus:
    dataset: DagsterDataset
    records: dict[str, RowGroupRecord]
    #: Row groups of the target whose partition key is registered.
    registered: frozenset[str]
    #: Registered keys that name no row group of the target ("foo", "00010" of 10 row groups).
    stray: tuple[str, ...]

    @classmethod
    def read(cls, instance: dg.DagsterInstance, dataset: DagsterDataset, asset_key: dg.AssetKey) -> RowGroupStatus:
        keys = instance.get_dynamic_partitions(dataset.partitions_def.name)
        registered = frozenset(k for k in keys if dataset.is_valid_key(k))
        stray = tuple(k for k in keys if k not in registered)
        return cls(dataset, latest_records(instance, asset_key, registered), registered, stray)

    @cached_property
    def _states(self) -> dict[str, list[int]]:
        states: dict[str, list[int]] = {"current": [], "stale": [], "missing": [], "unregistered": []}
        ds = self.dataset
        for index, key in enumerate(ds.partition_keys):
            record = self.records.get(key)
            if key not in self.registered:
                states["unregistered"].append(index)
            elif record is None:
                states["missing"].append(index)
            elif ds.is_current(record.checkpoint, index):
                states["current"].append(index)
            else:
                states["stale"].append(index)
        return states

    @property
    def current(self) -> list[int]:
        return self._states["current"]

    @property
    def stale(self) -> list[int]:
        """Made under another config (or another row-group size or target)."""
        return self._states["stale"]

    @property
    def missing(self) -> list[int]:
        """Registered, never materialized (or not by dd)."""
        return self._states["missing"]

    @property
    def unregistered(self) -> list[int]:
        """Not yet registered as partitions (the registration sensor adds them)."""
        return self._states["unregistered"]

    @property
    def to_regenerate(self) -> list[int]:
        return sorted(self.stale + self.missing)

    @property
    def complete(self) -> bool:
        return len(self.current) == self.dataset.num_row_groups

    def keys(self, indices: list[int]) -> str:
        shown = ", ".join(self.dataset.partition_key(i) for i in indices[:SHOWN_KEYS])
        return shown + (f", ... ({len(indices)} in all)" if len(indices) > SHOWN_KEYS else "") if indices else "none"

    def summary(self) -> str:
        """E.g. ``3 of 10 row groups are stale (00001, 00002, 00003), 2 missing (00008, 00009)``."""
        parts = [f"{len(self.stale)} stale ({self.keys(self.stale)})"] * bool(self.stale)
        parts += [f"{len(self.missing)} missing ({self.keys(self.missing)})"] * bool(self.missing)
        parts += [f"{len(self.unregistered)} not registered yet ({self.keys(self.unregistered)})"] * bool(
            self.unregistered
        )
        total = self.dataset.num_row_groups
        if not parts:
            return f"all {total} row groups are current"
        return f"{total - len(self.current)} of {total} row groups are not current: " + ", ".join(parts)

    def metadata(self) -> dict[str, dg.RawMetadataValue]:
        return {
            "current": len(self.current),
            "stale": len(self.stale),
            "missing": len(self.missing) + len(self.unregistered),
            "stale_keys": dg.MetadataValue.text(self.keys(self.stale)),
            "missing_keys": dg.MetadataValue.text(self.keys(self.missing + self.unregistered)),
            "stray_keys": dg.MetadataValue.text(", ".join(self.stray[:SHOWN_KEYS]) or "none"),
            "current_config_hash": dg.MetadataValue.text(self.dataset.config_hash),
        }
