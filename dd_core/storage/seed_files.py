"""Seed files wherever they are: a local file, an object-store URL (``s3://``, ``gs://``,
``az://``, ``abfs[s]://``) or a Hub dataset file (``hf://datasets/org/name[@revision]/path``).

``inspect_seed`` looks a file up once (its content identity, rows and columns); ``read_rows``
then reads the rows a row group needs, a parquet row group at a time (a few kept per process),
never the whole file. A remote CSV is streamed block by block. Every read is pinned to the
version that was inspected: an object replaced meanwhile fails the read with
``SeedChangedError`` rather than mixing two versions into one dataset.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import IO

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from dd_core.errors import GenerationError
from dd_core.storage.filesystems import storage_path
from dd_core.storage.hub_files import HubFile, is_hub_url, look_up, open_hub_file
from dd_core.storage.object_files import ObjectChanged, open_object

SUFFIXES = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv"}
#: Bytes per block of a streamed CSV.
CSV_BLOCK = 1 << 20


class SeedChangedError(GenerationError):
    """The seed file changed after the run looked it up (exit 6)."""


@dataclass(frozen=True)
class SeedFile:
    #: An absolute local path, an object-store URL or an ``hf://`` URL.
    location: str
    format: str
    #: What enters the fingerprint: ``content_sha256`` (local) or ``content_version`` (remote).
    identity: tuple[tuple[str, str], ...]
    size: int
    num_rows: int
    columns: tuple[str, ...]
    #: Rows per parquet row group (empty for CSV).
    row_group_rows: tuple[int, ...] = ()
    #: The object version the reads are pinned to (ETag or generation), or the Hub file.
    e_tag: str | None = None
    version: str | None = None
    hub: HubFile | None = None

    @property
    def is_local(self) -> bool:
        return self.hub is None and storage_path(self.location).is_local

    def open(self) -> str | IO[bytes]:
        """Something pyarrow reads, pinned to the inspected version."""
        if self.hub is not None:
            return open_hub_file(self.hub)
        path = storage_path(self.location)
        if path.is_local:
            return path.path
        meta = {"size": self.size, "e_tag": self.e_tag, "version": self.version}
        return open_object(path.fs.store, path.path, str(path), meta)


def seed_format(location: str) -> str | None:
    return SUFFIXES.get(Path(location.split("?", 1)[0]).suffix.lower())


def inspect_seed(location: str) -> SeedFile:
    """Look the file up: identity, size, rows and columns (a footer, or one streamed pass over a
    remote CSV). Raises ``OSError``/``pa.ArrowException`` for an unreadable file, ``StorageError``
    for a refused remote one."""
    kind = seed_format(location)
    if is_hub_url(location):
        hub = look_up(location)
        partial = SeedFile(hub.url, kind, (("content_version", hub.content_id),), hub.size, 0, (), hub=hub)
    else:
        path = storage_path(location)
        if path.is_local:
            identity = (("content_sha256", path.content_version()),)
            partial = SeedFile(path.path, kind, identity, Path(path.path).stat().st_size, 0, ())
        else:
            meta = path.fs.head(path.path)
            version = meta.get("version") or meta.get("e_tag") or ""
            partial = SeedFile(str(path), kind, (("content_version", version),), int(meta["size"]), 0, (),
                               e_tag=meta.get("e_tag"), version=meta.get("version"))  # fmt: skip
    if kind == "parquet":
        metadata = _parquet_file(partial).metadata
        groups = tuple(metadata.row_group(i).num_rows for i in range(metadata.num_row_groups))
        columns = tuple(_parquet_file(partial).schema_arrow.names)
        return replace(partial, num_rows=metadata.num_rows, columns=columns, row_group_rows=groups)
    if partial.is_local:
        table = _local_csv(partial)
        return replace(partial, num_rows=table.num_rows, columns=tuple(table.column_names))
    rows, columns = 0, ()
    for batch in _csv_batches(partial):
        rows += batch.num_rows
        columns = tuple(batch.schema.names)
    return replace(partial, num_rows=rows, columns=columns)


def read_rows(seed: SeedFile, picks: np.ndarray, columns: list[str]) -> pa.Table:
    """Rows ``picks`` (file row numbers, any order, repeats allowed) of ``columns``."""
    try:
        if seed.format == "parquet":
            return _parquet_rows(seed, picks, tuple(columns))
        if seed.is_local:
            return _local_csv(seed).select(columns).take(pa.array(picks))
        return _csv_rows(seed, picks, columns)
    except ObjectChanged as exc:
        raise SeedChangedError(
            f"seed file {seed.location} changed during the run (it was version {dict(seed.identity)}); row groups "
            "made so far used the old content. Run again: the new content is a new config fingerprint"
        ) from exc


def _in_file_order(picks: np.ndarray, starts: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
    """(block index, positions in ``picks``) for each block of the file that holds picks;
    ``starts``: each block's first row."""
    block_of = np.searchsorted(starts, picks, side="right") - 1
    for block in np.unique(block_of):
        yield int(block), np.flatnonzero(block_of == block)


def _assemble(pieces: list[pa.Table], positions: list[np.ndarray], count: int) -> pa.Table:
    """The pieces' rows back in pick order."""
    table = pa.concat_tables(pieces)
    where = np.empty(count, dtype=np.int64)
    where[np.concatenate(positions)] = np.arange(count)
    return table.take(pa.array(where))


def _parquet_rows(seed: SeedFile, picks: np.ndarray, columns: tuple[str, ...]) -> pa.Table:
    starts = np.concatenate([[0], np.cumsum(seed.row_group_rows)])[:-1]
    pieces, positions = [], []
    for group, where in _in_file_order(picks, starts):
        rows = _row_group(seed, group, columns)
        pieces.append(rows.take(pa.array(picks[where] - starts[group])))
        positions.append(where)
    return _assemble(pieces, positions, len(picks))


def _parquet_file(seed: SeedFile) -> pq.ParquetFile:
    return _open_parquet(seed.location, seed.identity, seed.size, seed.e_tag, seed.version, seed.hub)


@lru_cache(maxsize=4)
def _open_parquet(location: str, identity: tuple, size: int, e_tag: str | None, version: str | None,
                  hub: HubFile | None) -> pq.ParquetFile:  # fmt: skip
    """An open reader per seed file version and process (its footer read once, when the config
    is loaded)."""
    return pq.ParquetFile(SeedFile(location, "parquet", identity, size, 0, (), (), e_tag, version, hub).open())


@lru_cache(maxsize=8)
def _row_group(seed: SeedFile, index: int, columns: tuple[str, ...]) -> pa.Table:
    """One parquet row group of a seed (the few most recent kept: consecutive row groups of an
    ordered seed read the same ones)."""
    return _parquet_file(seed).read_row_group(index, columns=list(columns))


@lru_cache(maxsize=2)
def _local_csv(seed: SeedFile) -> pa.Table:
    """A local CSV, read whole once per process as dd always did (types inferred over the file)."""
    return pacsv.read_csv(seed.location)


def _csv_batches(seed: SeedFile) -> Iterator[pa.RecordBatch]:
    options = pacsv.ReadOptions(block_size=CSV_BLOCK)
    with seed.open() as source:
        yield from pacsv.open_csv(source, read_options=options)


def _csv_rows(seed: SeedFile, picks: np.ndarray, columns: list[str]) -> pa.Table:
    """One pass over the CSV, up to the last row needed, keeping only the picked rows."""
    pieces, positions = [], []
    last, start = int(picks.max()), 0
    for batch in _csv_batches(seed):
        end = start + batch.num_rows
        where = np.flatnonzero((picks >= start) & (picks < end))
        if len(where):
            table = pa.Table.from_batches([batch]).select(columns)
            pieces.append(table.take(pa.array(picks[where] - start)))
            positions.append(where)
        if end > last:
            break
        start = end
    return _assemble(pieces, positions, len(picks))
