"""Where things live in a dataset folder."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

PARQUET_DIR = "parquet-files"
METADATA_FILE = "metadata.json"
CONFIG_FILE = "config.json"
FINAL_FILE = "dataset.parquet"
LLM_CACHE_DIR = "llm-cache"
LOCK_FILE = ".dd.lock"
LOCK_HOLDER_FILE = ".dd.lock.json"
_BATCH = re.compile(r"^batch_(\d{5,})\.parquet$")


def batch_file_name(index: int) -> str:
    return f"batch_{index:05d}.parquet"


def batch_index(name: str) -> int | None:
    match = _BATCH.match(name)
    return int(match.group(1)) if match else None


@dataclass(frozen=True)
class DatasetLayout:
    root: Path

    @property
    def name(self) -> str:
        return self.root.name

    @property
    def metadata(self) -> Path:
        return self.root / METADATA_FILE

    @property
    def config(self) -> Path:
        return self.root / CONFIG_FILE

    @property
    def parquet_dir(self) -> Path:
        return self.root / PARQUET_DIR

    @property
    def final(self) -> Path:
        """The processed dataset; written only when the config has processors."""
        return self.root / FINAL_FILE

    @property
    def llm_cache(self) -> Path:
        """Successful LLM calls, one log per row group (see dd_core.engine.llm.cache)."""
        return self.root / LLM_CACHE_DIR

    @property
    def lock(self) -> Path:
        return self.root / LOCK_FILE

    @property
    def lock_holder(self) -> Path:
        return self.root / LOCK_HOLDER_FILE

    def batch(self, index: int) -> Path:
        return self.parquet_dir / batch_file_name(index)
