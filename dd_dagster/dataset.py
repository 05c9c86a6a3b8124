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
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from urllib.parse import urlsplit

import dagster as dg
import yaml

from dd_core import DatasetConfig, Fingerprint, fingerprint, load_config
from dd_core.orchestration import Checkpoint, RowGroupIdentity, StoragePath, identity_of, row_group_sizes, storage_path


@dataclass(frozen=True)
class DagsterDataset:
    config: DatasetConfig
    name: str
    num_records: int
    buffer_size: int
    #: The config file, when the config came from one (shown in the UI as a code reference).
    config_path: Path | None = None

    @classmethod
    def create(
        cls, config: DatasetConfig | str | Path | dict, num_records: int, buffer_size: int, name: str | None = None
    ) -> DagsterDataset:
        path = (
            Path(config).resolve()
            if isinstance(config, (str, Path)) and str(config).endswith((".yaml", ".yml", ".json"))
            else None
        )
        config = load_config(config)
        row_group_sizes(num_records, buffer_size)  # a bad target fails now, at definition time
        return cls(config, name or config.name or "dataset", num_records, buffer_size, path)

    @cached_property
    def config_text(self) -> str:
        """The config as its author wrote it (the file), else as YAML."""
        if self.config_path is not None:
            return self.config_path.read_text(encoding="utf-8")
        return yaml.safe_dump(self.config.model_dump(mode="json", exclude_defaults=True), sort_keys=False)

    @cached_property
    def fingerprint(self) -> Fingerprint:
        return fingerprint(self.config)

    @property
    def config_hash(self) -> str:
        return self.fingerprint.config_hash

    @cached_property
    def identity(self) -> RowGroupIdentity:
        """What each row-group file of the current version must say it is."""
        return identity_of(self.config, self.buffer_size)

    def has_finished_file(self, path: StoragePath, index: int) -> bool:
        """The file at ``path`` exists and says it is row group ``index`` of the current version."""
        return self.identity.finished_file(path, index, self.sizes[index]) is not None

    @property
    def batched(self) -> bool:
        """A model of the config uses the Batch API."""
        return any(m.batch for m in self.config.models)

    @cached_property
    def sizes(self) -> Mapping[int, int]:
        """Requested rows per row group."""
        return row_group_sizes(self.num_records, self.buffer_size)

    @property
    def num_row_groups(self) -> int:
        return len(self.sizes)

    def is_current(self, checkpoint: Checkpoint | None, index: int) -> bool:
        """Whether a row group's checkpoint was made under the current config and target."""
        return checkpoint is not None and (
            checkpoint.config_hash,
            checkpoint.requested_rows,
            checkpoint.buffer_size,
        ) == (
            self.config_hash,
            self.sizes[index],
            self.buffer_size,
        )

    @cached_property
    def key_width(self) -> int:
        return max(5, len(str(self.num_row_groups - 1)))

    def partition_key(self, index: int) -> str:
        return f"{index:0{self.key_width}d}"

    def index(self, partition_key: str) -> int:
        """The row group a valid key names; see ``invalid_keys``."""
        return int(partition_key)

    @property
    def key_range(self) -> str:
        """The valid keys, e.g. ``00000..00009``."""
        return f"{self.partition_key(0)}..{self.partition_key(self.num_row_groups - 1)}"

    def is_valid_key(self, partition_key: str) -> bool:
        """Whether the key names a row group of the target: digits only, the keys' width, in range."""
        key = partition_key
        return len(key) == self.key_width and key.isascii() and key.isdigit() and int(key) < self.num_row_groups

    def invalid_keys(self, partition_keys: Iterable[str]) -> list[str]:
        return [key for key in partition_keys if not self.is_valid_key(key)]

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

    def version_dir(
        self, artifact_path: str, config_hash: str | None = None, buffer_size: int | None = None
    ) -> StoragePath:
        """The folder of one version of the dataset (the current one by default)."""
        digest = (config_hash or self.config_hash).split(":", 1)[1][:16]
        return self.root(artifact_path) / f"{digest}-b{buffer_size or self.buffer_size}"

    def row_group_path(self, artifact_path: str, index: int, checkpoint: Checkpoint | None = None) -> StoragePath:
        """Where row group ``index`` is (or goes): of the current config, or of ``checkpoint``'s."""
        cp = checkpoint or Checkpoint(self.config_hash, self.sizes[index], self.buffer_size)
        suffix = "" if cp.requested_rows == cp.buffer_size else f"-rows{cp.requested_rows}"
        return (
            self.version_dir(artifact_path, cp.config_hash, cp.buffer_size)
            / "parquet-files"
            / f"batch_{index:05d}{suffix}.parquet"
        )

    def claim_path(self, artifact_path: str, index: int) -> StoragePath:
        return self.version_dir(artifact_path) / "claims" / f"batch_{index:05d}.lock"

    def combined_path(self, artifact_path: str) -> StoragePath:
        return self.version_dir(artifact_path) / "dataset.parquet"

    def llm_cache_dir(self, artifact_path: str) -> StoragePath:
        return self.root(artifact_path) / "llm-cache"
