"""A dataset folder: what it holds (scan), and crash-safe writes of its parts.

Fast path: ``metadata.json`` plus one directory listing. Only files the metadata does not
know yet (a crash between the parquet rename and the metadata write) have their footers read.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import math
import os
import shutil
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.parquet as pq

from dd_core.errors import DatasetDamagedError, DDError, DDUsageError
from dd_core.interrupts import deferred
from dd_core.log import get_logger
from dd_core.resume import Checkpoint, Found, FoundState, RangeCheckpoints
from dd_core.storage.acceptance import account_acceptance, row_group_acceptance
from dd_core.storage.atomic import discard, storage_failure
from dd_core.storage.faults import fault_point
from dd_core.storage.filesystems import StoragePath, local_temp_file, storage_path
from dd_core.storage.layout import FINAL_FILE, LOCK_FILE, DatasetLayout, batch_index
from dd_core.storage.metadata import COMPLETE, DatasetMetadata, RowCounts, load_metadata
from dd_core.storage.row_group_files import RowGroupInfo, read_info, read_num_rows, read_table
from dd_core.storage.spend import account, account_outside_row_groups, row_group_spend

log = get_logger(__name__)


@dataclass
class FolderScan:
    found: FoundState
    metadata: DatasetMetadata | None
    #: Row groups whose file exists but the metadata does not list yet.
    unrecorded: dict[int, RowGroupInfo] = field(default_factory=dict)


def list_batches(layout: DatasetLayout) -> dict[int, str]:
    """Row-group index -> file name, from one directory listing (names only: 10k files)."""
    batches = {}
    try:
        names = layout.parquet_dir.list_names()
    except NotADirectoryError as exc:
        raise DatasetDamagedError(
            f"{layout.parquet_dir} is a file, not the folder of row-group files; nothing was changed. "
            "Move it aside if it does not belong there"
        ) from exc
    except OSError as exc:
        raise DatasetDamagedError(
            f"cannot list {layout.parquet_dir}: {exc.strerror or exc}; nothing was changed"
        ) from exc
    for name in names:
        index = batch_index(name)
        if index is not None:
            batches[index] = name
    return batches


def scan_folder(layout: DatasetLayout) -> FolderScan:
    """What the folder holds, from a consistent snapshot even while a writer works in it: the
    metadata is read before the files are listed. A row group's file is in place before the
    metadata records it and stays there, so every row group this metadata lists is in the later
    listing; a file finished between the two reads is found as not yet recorded."""
    meta = load_metadata(layout.metadata) if layout.metadata.exists() else None
    batches = list_batches(layout)
    if meta is None:
        return FolderScan(FoundState(Found.DATA_WITHOUT_METADATA if batches else Found.NOTHING), None)
    # Without expanding the metadata's ranges: compare what is listed with what is there.
    present = sum(1 for i in batches if i in meta.completed)
    if present < len(meta.completed):
        missing = list(itertools.islice((i for i in meta.completed if i not in batches), 10))
        raise DatasetDamagedError(
            f"{layout.metadata} lists row groups {missing}{'...' if len(meta.completed) - present > 10 else ''} as finished, "
            f"but their files are missing from {layout.parquet_dir} ({len(meta.completed) - present:,} missing). Nothing was "
            "changed; restore the files, or use --resume never to start a new folder"
        )
    unrecorded = _unrecorded(layout, meta, batches)
    recorded = meta.completed.checkpoints(meta.config_hash)
    extra = {i: Checkpoint(info.config_hash, info.requested_rows, info.buffer_size) for i, info in unrecorded.items()}
    checkpoints = RangeCheckpoints(recorded.indices, recorded.regular, {**recorded.irregular, **extra})
    found = FoundState(
        Found.DATASET,
        config_hash=meta.config_hash,
        buffer_size=meta.buffer_size,
        num_records=meta.num_records,
        checkpoints=checkpoints,
        finished=meta.status == COMPLETE and not unrecorded,
    )
    return FolderScan(found, meta, unrecorded)


def _unrecorded(layout: DatasetLayout, meta: DatasetMetadata, batches: dict[int, str]) -> dict[int, RowGroupInfo]:
    """Finished files the metadata does not list yet (footers checked: they must belong here)."""
    unrecorded = {}
    for index in sorted(i for i in batches if i not in meta.completed):
        path = layout.parquet_dir / batches[index]
        info = read_info(path)
        _check_belongs(info, index, meta, path)
        unrecorded[index] = info
    return unrecorded


def _check_belongs(info: RowGroupInfo, index: int, meta: DatasetMetadata, path: StoragePath) -> None:
    mismatch = meta.identity.mismatch(info, index)
    if mismatch:
        found, expected = mismatch
        raise DatasetDamagedError(
            f"{path} says it is {found}, but the folder's metadata expects {expected}. It was not changed; "
            "move it out of the folder if it does not belong there"
        )


def verify_row_groups(layout: DatasetLayout, meta: DatasetMetadata) -> None:
    """Read every footer once: each finished file must say what the metadata says (its index,
    row counts, config hash and buffer size). Raises ``DatasetDamagedError`` otherwise."""
    for index, path in _finished_files(layout, meta):
        _check_finished(read_info(path), index, meta, path)


def read_finished_tables(layout: DatasetLayout, meta: DatasetMetadata) -> Iterator[pa.Table]:
    """A finished dataset's tables in row order, each checked as ``verify_row_groups`` does,
    from the table read (one read per file, not a footer read and then the file)."""
    if meta.dataset_path == FINAL_FILE:
        table = read_table(layout.final)
        if table.num_rows != meta.actual_num_records:
            raise DatasetDamagedError(
                f"{layout.final} holds {table.num_rows} rows, but the dataset's row groups hold "
                f"{meta.actual_num_records}; nothing was changed. Delete it and resume to write it again"
            )
        yield table
        return
    for index, path in _finished_files(layout, meta):
        table = read_table(path)
        _check_finished(RowGroupInfo.from_kv(table.schema.metadata, path), index, meta, path)
        yield table


def _finished_files(layout: DatasetLayout, meta: DatasetMetadata) -> Iterator[tuple[int, StoragePath]]:
    batches = list_batches(layout)
    for index in meta.completed:
        if index not in batches:
            raise DatasetDamagedError(
                f"row group {index} of {layout.root} is listed as finished, but its file is missing; nothing was changed"
            )
        yield index, layout.parquet_dir / batches[index]


def _check_finished(info: RowGroupInfo, index: int, meta: DatasetMetadata, path: StoragePath) -> None:
    _check_belongs(info, index, meta, path)
    counts = meta.completed[index]
    if (info.requested_rows, info.num_rows) != (counts.requested, counts.rows):
        raise DatasetDamagedError(
            f"{path} holds {info.num_rows} of {info.requested_rows} requested rows, but the metadata records "
            f"{counts.rows} of {counts.requested}; nothing was changed. Restore the file, or move it aside and resume "
            "to regenerate that row group"
        )


def verify_final_file(layout: DatasetLayout, meta: DatasetMetadata) -> None:
    """The processed dataset file must be readable and hold every finished row."""
    rows = read_num_rows(layout.final)
    if rows != meta.actual_num_records:
        raise DatasetDamagedError(
            f"{layout.final} holds {rows} rows, but the dataset's row groups hold {meta.actual_num_records}; nothing "
            "was changed. Delete it and resume to write it again"
        )


#: How often, at most, ``metadata.json`` is rewritten while row groups finish.
RECORD_SECONDS_ENV = "DD_RECORD_SECONDS"


def record_interval() -> float:
    """``DD_RECORD_SECONDS`` (default 1): 0 records after every row group, ``inf`` only at the
    start and end of a run (and when it stops)."""
    text = os.environ.get(RECORD_SECONDS_ENV, "1")
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not seconds >= 0:  # NaN too
        raise DDUsageError(
            f"{RECORD_SECONDS_ENV}={text[:40]!r} is not a number of seconds: use 0 or more (default 1), or inf"
        )
    return seconds


class DatasetWriter:
    """Writes one dataset folder; the caller holds the folder's lock.

    Row groups are recorded in ``metadata.json`` at most once per ``record_interval_s``: a row
    group's file says everything its record holds (index, row counts, spend, acceptance), so one
    finished but not yet recorded when the run dies is adopted from its file by the next run
    (``scan_folder`` reads it, ``start`` records it), never made again. Each save first fsyncs
    the parquet folder, so every row group ``metadata.json`` lists is durably in place."""

    def __init__(
        self,
        layout: DatasetLayout,
        metadata: DatasetMetadata,
        record_interval_s: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.layout = layout
        self.metadata = metadata
        self.record_interval_s = record_interval_s
        self._clock = clock
        self._unsaved = 0  # row groups counted since the last save
        self._next_save = 0.0

    def start(
        self, resolved_config: dict, unrecorded: dict[int, RowGroupInfo], spend: Mapping[str, Mapping] | None = None
    ) -> None:
        """Clear interrupted writes, adopt finished-but-unrecorded files, record the run parameters
        and ``spend`` of no row group (what this run paid before its first row group)."""
        self._remove_temp_files()
        if spend:
            account_outside_row_groups(self.metadata.extra, spend)
        for index, info in unrecorded.items():
            log.info("row group %d was written but not recorded before a crash; recorded it now", index)
            self._count(info)
        # One folder fsync (the metadata's) makes both renames durable.
        self.layout.config.write_atomic(
            json.dumps(resolved_config, indent=2, ensure_ascii=False).encode(), fault_prefix="config", sync_folder=False
        )
        self.metadata.status = "in_progress"
        self.metadata.dataset_path = None
        self._save(sync_root=True)

    def record_row_group(self, info: RowGroupInfo, *, with_usage: bool = False) -> None:
        """Record a row group whose file is already in place (written by its producer, its
        folder not synced yet). ``metadata.json`` is saved when due, and at once when the next
        run could not rebuild the record from the file alone: ``with_usage`` (the metadata took
        this run's LLM usage for it, which the file does not hold), or the row group replaces
        one recorded before (a partial last row group completed; only files not recorded at all
        are adopted). A Ctrl-C or SIGTERM waits until a save is done."""
        with deferred():
            replaces = info.row_group in self.metadata.completed
            self._count(info)
            if with_usage or replaces or self._clock() >= self._next_save:
                self._save()

    def _save(self, *, sync_root: bool = False) -> None:
        """Save what is counted, after an fsync of the parquet folder (the row groups listed are
        durably there). Without ``sync_root`` the dataset folder is not fsynced: after a power
        loss before its next commit, metadata.json is the previous record, whole, and the next
        run adopts the row groups recorded since from their durable files."""
        self.layout.parquet_dir.sync_folder()
        self.metadata.save(self.layout.metadata, sync_folder=sync_root)
        self._unsaved = 0
        self._next_save = self._clock() + self.record_interval_s

    def _remove_temp_files(self, level: int = logging.INFO) -> None:
        for folder in (self.layout.root, self.layout.parquet_dir):
            for name in folder.remove_temp_files():
                log.log(level, "removed %s left by an interrupted write", folder / name)

    def settle_after_stop(self) -> None:
        """After a stop (Ctrl-C, SIGTERM, a failed row group or write) and once every producer
        has stopped: remove what a stopped producer left half-written, and save the row groups
        counted but not saved yet and those the producers finished but did not hand back, so
        the metadata and what the user is told agree with the files. Best effort: whatever
        stopped the run is what the caller reports."""
        try:
            with deferred():
                self._remove_temp_files(logging.DEBUG)  # our own producers' writes, cut short just now
                for info in _unrecorded(self.layout, self.metadata, list_batches(self.layout)).values():
                    self._count(info)
                if self._unsaved:
                    self._save(sync_root=True)
        except (DDError, OSError) as exc:
            log.debug("could not record finished row groups after the stop: %s", exc)

    def _count(self, info: RowGroupInfo) -> None:
        self.metadata.completed[info.row_group] = RowCounts(info.requested_rows, info.num_rows)
        partial = info.requested_rows != self.metadata.buffer_size
        account(self.metadata.extra, info.row_group, row_group_spend(info.llm_spend), partial=partial)
        account_acceptance(self.metadata.extra, info.row_group, row_group_acceptance(info.acceptance), partial=partial)
        self._unsaved += 1

    def verify(self) -> None:
        verify_row_groups(self.layout, self.metadata)

    def finish(self, dataset_path: str) -> None:
        self.metadata.status = COMPLETE
        self.metadata.dataset_path = dataset_path
        self._save(sync_root=True)


def remove_unstarted(layout: DatasetLayout, *, root: bool = False) -> None:
    """Remove what a run wrote into a folder that held nothing and got no finished row group
    (its start-of-run metadata and config, an empty parquet folder, the LLM cache). With
    ``root``, after the lock is released, also the lock file and the folder itself when empty."""
    if not layout.root.is_local:
        for part in (layout.metadata, layout.config):
            part.unlink()
        return
    folder = layout.root.local
    if root:
        for name in (LOCK_FILE, LOCK_FILE + ".json"):
            (folder / name).unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            folder.rmdir()  # only when nothing else is in it
        return
    for part in (layout.metadata, layout.config):
        part.local.unlink(missing_ok=True)
    shutil.rmtree(layout.llm_cache.local, ignore_errors=True)
    with contextlib.suppress(OSError):
        layout.parquet_dir.local.rmdir()


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
    except OSError as exc:
        raise storage_failure(path, exc) from exc
    finally:
        discard(tmp)
    return rows
