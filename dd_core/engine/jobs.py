"""What the pipeline is asked to produce, and what it hands back."""

from __future__ import annotations

import time
from dataclasses import dataclass

import pyarrow as pa

from dd_core.config import DatasetConfig
from dd_core.engine.llm.usage import ModelUsage
from dd_core.engine.row_group import RowGroupResult
from dd_core.fingerprinting import fingerprint
from dd_core.storage.filesystems import StoragePath
from dd_core.storage.row_group_files import RowGroupInfo, write_row_group_file


@dataclass(frozen=True)
class RowGroupJob:
    """One row group to produce."""

    index: int
    num_rows: int
    #: Write the finished row group here (crash-safely); None hands the table back instead.
    path: StoragePath | None = None


@dataclass
class ProducedRowGroup:
    """A finished row group: its self-description, LLM usage, and its table or written file."""

    info: RowGroupInfo
    usage: dict[str, ModelUsage]
    #: From the start of its row-wise stage (or its vectorised stage) to finished.
    seconds: float
    table: pa.Table | None = None
    path: StoragePath | None = None
    #: sha256 of the written file's bytes.
    sha256: str | None = None

    @property
    def index(self) -> int:
        return self.info.row_group

    @property
    def dropped_rows(self) -> int:
        return self.info.requested_rows - self.info.num_rows


@dataclass(frozen=True)
class RowGroupSizes:
    """What every row group's self-description shares."""

    config_hash: str
    config_hash_version: int
    buffer_size: int
    seed: int

    def __init__(self, config: DatasetConfig, buffer_size: int):
        fp = fingerprint(config)
        object.__setattr__(self, "config_hash", fp["config_hash"])
        object.__setattr__(self, "config_hash_version", fp["config_hash_version"])
        object.__setattr__(self, "buffer_size", buffer_size)
        object.__setattr__(self, "seed", config.seed)

    def info(self, job: RowGroupJob, num_rows: int, llm_spend: str = "") -> RowGroupInfo:
        return RowGroupInfo(job.index, job.num_rows, num_rows, self.config_hash, self.config_hash_version, self.buffer_size, self.seed, llm_spend)


def finish(job: RowGroupJob, result: RowGroupResult, sizes: RowGroupSizes, started: float) -> ProducedRowGroup:
    """Describe a finished row group and, when the job says where, write it crash-safely."""
    info = sizes.info(job, result.table.num_rows, result.llm_spend)
    if job.path is None:
        return ProducedRowGroup(info, result.usage, time.perf_counter() - started, table=result.table)
    digest = write_row_group_file(job.path, result.table, info)
    return ProducedRowGroup(info, result.usage, time.perf_counter() - started, path=job.path, sha256=digest)
