"""One dataset as Dagster sees it: config, target, partition keys and where its files live.

Files are addressed by fingerprint (and row-group size), so regenerating a row group under a
new config never overwrites the file an older materialization points to:

    <artifact_path>/<dataset>/<hash16>-b<buffer_size>/parquet-files/batch_NNNNN.parquet
    <artifact_path>/<dataset>/<hash16>-b<buffer_size>/parquet-files/batch_NNNNN-rows<R>.parquet   (partial)
    <artifact_path>/<dataset>/<hash16>-b<buffer_size>/dataset.parquet                           (combined)
    <artifact_path>/<dataset>/llm-cache/                  (shared by every fingerprint: keyed by request)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from urllib.parse import urlsplit

import dagster as dg

from dd_core import Checkpoint, DatasetConfig, StoragePath, fingerprint, load_config, row_group_sizes, storage_path


@dataclass(frozen=True)
class DagsterDataset:
    config: DatasetConfig
    name: str
    num_records: int
    buffer_size: int

    @classmethod
    def create(cls, config, num_records: int, buffer_size: int, name: str | None = None) -> DagsterDataset:
        config = load_config(config)
        row_group_sizes(num_records, buffer_size)  # a bad target fails now, at definition time
        return cls(config, name or config.name or "dataset", num_records, buffer_size)

    @cached_property
    def fingerprint(self) -> dict:
        return fingerprint(self.config)

    @property
    def config_hash(self) -> str:
        return self.fingerprint["config_hash"]

    @cached_property
    def sizes(self) -> dict[int, int]:
        """Requested rows per row group."""
        return row_group_sizes(self.num_records, self.buffer_size)

    @cached_property
    def key_width(self) -> int:
        return max(5, len(str(len(self.sizes) - 1)))

    def partition_key(self, index: int) -> str:
        return f"{index:0{self.key_width}d}"

    def index(self, partition_key: str) -> int:
        return int(partition_key)

    @cached_property
    def partition_keys(self) -> list[str]:
        return [self.partition_key(i) for i in self.sizes]

    def llm_endpoint(self, overrides: dict[str, str | None] | None = None) -> str | None:
        """The model server of the dataset's first LLM column (base URL), after overrides."""
        for col in self.config.generation_order:
            alias = getattr(col, "model", None)
            if alias is not None:
                return (overrides or {}).get(alias) or self.config.model(alias).base_url
        return None

    @staticmethod
    def llm_pool(endpoint: str) -> str:
        """A Dagster concurrency pool per model server, e.g. ``dd_llm_127_0_0_1_8000``."""
        return "dd_llm_" + re.sub(r"[^A-Za-z0-9]+", "_", urlsplit(endpoint).netloc or endpoint).strip("_")

    @cached_property
    def partitions_def(self) -> dg.DynamicPartitionsDefinition:
        return dg.DynamicPartitionsDefinition(name=f"{self.name}_row_groups")

    def root(self, artifact_path: str) -> StoragePath:
        return storage_path(artifact_path) / self.name

    def version_dir(self, artifact_path: str, config_hash: str | None = None, buffer_size: int | None = None) -> StoragePath:
        """The folder of one version of the dataset (the current one by default)."""
        digest = (config_hash or self.config_hash).split(":", 1)[1][:16]
        return self.root(artifact_path) / f"{digest}-b{buffer_size or self.buffer_size}"

    def row_group_path(self, artifact_path: str, index: int, checkpoint: Checkpoint | None = None) -> StoragePath:
        """Where row group ``index`` is (or goes): of the current config, or of ``checkpoint``'s."""
        cp = checkpoint or Checkpoint(self.config_hash, self.sizes[index], self.buffer_size)
        suffix = "" if cp.requested_rows == cp.buffer_size else f"-rows{cp.requested_rows}"
        return self.version_dir(artifact_path, cp.config_hash, cp.buffer_size) / "parquet-files" / f"batch_{index:05d}{suffix}.parquet"

    def claim_path(self, artifact_path: str, index: int) -> StoragePath:
        return self.version_dir(artifact_path) / "claims" / f"batch_{index:05d}.lock"

    def combined_path(self, artifact_path: str) -> StoragePath:
        return self.version_dir(artifact_path) / "dataset.parquet"

    def llm_cache_dir(self, artifact_path: str) -> StoragePath:
        return self.root(artifact_path) / "llm-cache"
