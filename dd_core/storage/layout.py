"""Where things live in a dataset folder."""

from __future__ import annotations

import re
from dataclasses import dataclass

from dd_core.storage.filesystems import StoragePath, storage_path

PARQUET_DIR = "parquet-files"
METADATA_FILE = "metadata.json"
CONFIG_FILE = "config.json"
FINAL_FILE = "dataset.parquet"
LLM_CACHE_DIR = "llm-cache"
LOCK_FILE = ".dd.lock"
#: ``keep_rejected``: the candidates an acceptance rule rejected, one file per row group.
REJECTED_DIR = "rejected-candidates"
_BATCH = re.compile(r"^batch_(\d{5,})\.parquet$")


def batch_file_name(index: int) -> str:
    return f"batch_{index:05d}.parquet"


def rejected_path(batch: StoragePath) -> StoragePath:
    """Where a row group's rejected candidates go: beside its ``parquet-files`` folder, never in it."""
    return batch.parent.parent / REJECTED_DIR / batch.name


def batch_index(name: str) -> int | None:
    match = _BATCH.match(name)
    return int(match.group(1)) if match else None


@dataclass(frozen=True)
class DatasetLayout:
    root: StoragePath

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", storage_path(self.root))  # also accepts a path or URI

    @property
    def name(self) -> str:
        return self.root.name

    @property
    def metadata(self) -> StoragePath:
        return self.root / METADATA_FILE

    @property
    def config(self) -> StoragePath:
        return self.root / CONFIG_FILE

    @property
    def parquet_dir(self) -> StoragePath:
        return self.root / PARQUET_DIR

    @property
    def final(self) -> StoragePath:
        """The processed dataset; written only when the config has processors."""
        return self.root / FINAL_FILE

    @property
    def llm_cache(self) -> StoragePath:
        """Successful LLM calls, one log per row group (see dd_core.engine.llm.cache)."""
        return self.root / LLM_CACHE_DIR

    @property
    def lock(self) -> StoragePath:
        return self.root / LOCK_FILE

    def batch(self, index: int) -> StoragePath:
        return self.parquet_dir / batch_file_name(index)
