"""A dataset folder: what it holds (scan), and crash-safe writes of its parts.

Fast path: ``metadata.json`` plus one directory listing. Only files the metadata does not
know yet (a crash between the parquet rename and the metadata write) have their footers read.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.parquet as pq

from dd_core.errors import DatasetDamagedError
from dd_core.resume import Checkpoint, Found, FoundState
from dd_core.storage.faults import fault_point
from dd_core.storage.filesystems import StoragePath, local_temp_file, storage_path
from dd_core.storage.layout import DatasetLayout, batch_index
from dd_core.storage.metadata import COMPLETE, DatasetMetadata, RowCounts, load_metadata
from dd_core.storage.row_group_files import RowGroupInfo, read_info, read_table, strip_dd_metadata
from dd_core.storage.spend import account, row_group_spend

log = logging.getLogger(__name__)


@dataclass
class FolderScan:
    found: FoundState
    metadata: DatasetMetadata | None
    #: Row groups whose file exists but the metadata does not list yet.
    unrecorded: dict[int, RowGroupInfo] = field(default_factory=dict)


def list_batches(layout: DatasetLayout) -> dict[int, str]:
    """Row-group index -> file name, from one directory listing (names only: 10k files)."""
    batches = {}
    for name in layout.parquet_dir.list_names():
        index = batch_index(name)
        if index is not None:
            batches[index] = name
    return batches


def scan_folder(layout: DatasetLayout) -> FolderScan:
    batches = list_batches(layout)
    if not layout.metadata.exists():
        return FolderScan(FoundState(Found.DATA_WITHOUT_METADATA if batches else Found.NOTHING), None)
    meta = load_metadata(layout.metadata)
    missing = sorted(set(meta.completed) - set(batches))
    if missing:
        raise DatasetDamagedError(
            f"{layout.metadata} lists row groups {missing[:10]}{'...' if len(missing) > 10 else ''} as finished, "
            f"but their files are missing from {layout.parquet_dir}. Nothing was changed; restore the files, or "
            "use --resume never to start a new folder"
        )
    unrecorded = {}
    for index in sorted(set(batches) - set(meta.completed)):
        path = layout.parquet_dir / batches[index]
        info = read_info(path)
        _check_belongs(info, index, meta, path)
        unrecorded[index] = info
    checkpoints = {i: Checkpoint(meta.config_hash, c.requested, meta.buffer_size) for i, c in meta.completed.items()}
    checkpoints.update({i: Checkpoint(info.config_hash, info.requested_rows, info.buffer_size) for i, info in unrecorded.items()})
    found = FoundState(
        Found.DATASET,
        config_hash=meta.config_hash,
        buffer_size=meta.buffer_size,
        num_records=meta.num_records,
        checkpoints=checkpoints,
        finished=meta.status == COMPLETE and not unrecorded,
    )
    return FolderScan(found, meta, unrecorded)


def _check_belongs(info: RowGroupInfo, index: int, meta: DatasetMetadata, path: StoragePath) -> None:
    if info.row_group != index or info.config_hash != meta.config_hash or info.buffer_size != meta.buffer_size:
        raise DatasetDamagedError(
            f"{path} says it is row group {info.row_group} of config {info.config_hash} (buffer_size "
            f"{info.buffer_size}), but the folder's metadata expects row group {index} of config "
            f"{meta.config_hash} (buffer_size {meta.buffer_size}). It was not changed; move it out of the folder "
            "if it does not belong there"
        )


class DatasetWriter:
    """Writes one dataset folder; the caller holds the folder's lock."""

    def __init__(self, layout: DatasetLayout, metadata: DatasetMetadata):
        self.layout = layout
        self.metadata = metadata

    def start(self, resolved_config: dict, unrecorded: dict[int, RowGroupInfo]) -> None:
        """Clear interrupted writes, adopt finished-but-unrecorded files, record the run parameters."""
        for folder in (self.layout.root, self.layout.parquet_dir):
            for name in folder.remove_temp_files():
                log.info("removed %s left by an interrupted write", folder / name)
        for index, info in unrecorded.items():
            log.info("row group %d was written but not recorded before a crash; recorded it now", index)
            self._count(info)
        self.layout.config.write_atomic(json.dumps(resolved_config, indent=2).encode(), fault_prefix="config")
        self.metadata.status = "in_progress"
        self.metadata.dataset_path = None
        self.metadata.save(self.layout.metadata)

    def record_row_group(self, info: RowGroupInfo) -> None:
        """Record a row group whose file is already in place (written by its producer)."""
        self._count(info)
        self.metadata.save(self.layout.metadata)

    def _count(self, info: RowGroupInfo) -> None:
        self.metadata.completed[info.row_group] = RowCounts(info.requested_rows, info.num_rows)
        partial = info.requested_rows != self.metadata.buffer_size
        account(self.metadata.extra, info.row_group, row_group_spend(info.llm_spend), partial=partial)

    def verify(self) -> None:
        """Read every footer once: each finished file must say what the metadata says."""
        batches = list_batches(self.layout)
        for index, counts in sorted(self.metadata.completed.items()):
            path = self.layout.parquet_dir / batches[index] if index in batches else None
            info = read_info(path) if path else None
            if info is None or info.requested_rows != counts.requested or info.num_rows != counts.rows:
                raise DatasetDamagedError(
                    f"row group {index} of {self.layout.root} does not match its metadata "
                    f"(file: {info}, metadata: {counts}); nothing was changed"
                )
            _check_belongs(info, index, self.metadata, path)

    def finish(self, dataset_path: str) -> None:
        self.metadata.status = COMPLETE
        self.metadata.dataset_path = dataset_path
        self.metadata.save(self.layout.metadata)


def iter_row_group_tables(layout: DatasetLayout, indices: list[int]) -> Iterator[pa.Table]:
    """Finished row groups in order, one at a time (memory stays at one row group)."""
    for index in indices:
        yield strip_dd_metadata(read_table(layout.batch(index)))


def write_streamed(path: StoragePath | str, tables: Iterator[pa.Table], schema: pa.Schema) -> int:
    """Stream tables into one parquet file at ``path``, crash-safely; returns the row count.

    Built in a local temp file (beside the target when local), then published atomically.
    """
    path = storage_path(path)
    tmp = local_temp_file(path)
    rows = 0
    try:
        with pq.ParquetWriter(tmp, schema) as writer:
            for table in tables:
                writer.write_table(table.cast(schema))
                rows += table.num_rows
                fault_point("final_partial")
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        path.publish(tmp)
    finally:
        tmp.unlink(missing_ok=True)
    return rows
