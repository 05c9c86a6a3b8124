"""Row-group parquet files that describe themselves: index, row counts and config hash
live in each file's key-value metadata, so the files alone say what is done."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq

from dd_core.errors import DatasetDamagedError
from dd_core.storage.filesystems import StoragePath, storage_path

PREFIX = "dd."


@dataclass(frozen=True)
class RowGroupInfo:
    """What a finished row group says about itself."""

    row_group: int
    requested_rows: int
    num_rows: int
    config_hash: str
    config_hash_version: int
    buffer_size: int
    seed: int
    #: What the row group was paid for, per model (JSON; see ``storage.spend``); "" for none.
    llm_spend: str = ""
    #: With an acceptance rule: its candidates generated, accepted, failed, and its budget
    #: (JSON; see ``storage.acceptance``); "" for none.
    acceptance: str = ""

    def to_kv(self) -> dict[bytes, bytes]:
        """Every field; ``acceptance`` only when there is a rule (files of other configs are unchanged)."""
        return {f"{PREFIX}{k}".encode(): str(v).encode() for k, v in self.__dict__.items() if k != "acceptance" or v}

    @classmethod
    def from_kv(cls, kv: dict[bytes, bytes], path: StoragePath) -> RowGroupInfo:
        try:
            values = {
                k.decode()[len(PREFIX) :]: v.decode() for k, v in (kv or {}).items() if k.startswith(PREFIX.encode())
            }
            return cls(
                row_group=int(values["row_group"]),
                requested_rows=int(values["requested_rows"]),
                num_rows=int(values["num_rows"]),
                config_hash=values["config_hash"],
                config_hash_version=int(values["config_hash_version"]),
                buffer_size=int(values["buffer_size"]),
                seed=int(values["seed"]),
                llm_spend=values.get("llm_spend", ""),
                acceptance=values.get("acceptance", ""),
            )
        except (KeyError, ValueError, UnicodeDecodeError) as exc:
            raise DatasetDamagedError(
                f"{path} is not a dd row-group file (its parquet metadata lacks or garbles {str(exc)[:80]}); "
                "it was not changed; move it out of the parquet-files folder"
            ) from exc


@dataclass(frozen=True)
class RowGroupIdentity:
    """What every row-group file of one dataset says alike, and the one test of whether a file
    belongs: its index, config (hash and hash version) and row-group size, and, where the
    caller knows it, its requested rows."""

    config_hash: str
    config_hash_version: int
    buffer_size: int
    seed: int

    def info(
        self, row_group: int, requested_rows: int, num_rows: int, llm_spend: str = "", acceptance: str = ""
    ) -> RowGroupInfo:
        """The self-description of one of this dataset's row groups."""
        return RowGroupInfo(
            row_group,
            requested_rows,
            num_rows,
            self.config_hash,
            self.config_hash_version,
            self.buffer_size,
            self.seed,
            llm_spend,
            acceptance,
        )

    def mismatch(self, info: RowGroupInfo, row_group: int, requested_rows: int | None = None) -> tuple[str, str] | None:
        """None when ``info`` is row group ``row_group`` of this dataset (with ``requested_rows``
        when given); else (what the file says it is, what is expected), for a message."""
        expected = (row_group, self.config_hash, self.config_hash_version, self.buffer_size)
        found = (info.row_group, info.config_hash, info.config_hash_version, info.buffer_size)
        if found == expected and requested_rows in (None, info.requested_rows):
            return None
        rows = "" if requested_rows is None else f" ({requested_rows} rows requested)"
        return (
            f"row group {info.row_group} ({info.requested_rows} rows requested) of config {info.config_hash} "
            f"(hash version {info.config_hash_version}, buffer_size {info.buffer_size})",
            f"row group {row_group}{rows} of config {self.config_hash} (hash version {self.config_hash_version}, buffer_size {self.buffer_size})",
        )

    def finished_file(self, path: StoragePath, row_group: int, requested_rows: int) -> RowGroupInfo | None:
        """What the file at ``path`` says, when it is that row group of this dataset; None when it
        is missing, unreadable or another's."""
        try:
            info = read_info(path)
        except (DatasetDamagedError, FileNotFoundError):
            return None
        return None if self.mismatch(info, row_group, requested_rows) else info


def write_row_group_file(
    path: StoragePath | str, table: pa.Table, info: RowGroupInfo, *, sync_folder: bool = True, digest: bool = True
) -> str | None:
    """Write crash-safely (the file appears whole under its final name or not at all, its bytes
    durable before it has that name); returns the sha256 of the file's bytes (None without
    ``digest``). ``sync_folder=False`` leaves the name's durability to the caller's next
    ``StoragePath.sync_folder`` of the parquet folder (one fsync for many files)."""
    path = storage_path(path)
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), **info.to_kv()})
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    data = sink.getvalue().to_pybytes()
    path.write_atomic(data, fault_prefix="parquet", sync_folder=sync_folder)
    return hashlib.sha256(data).hexdigest() if digest else None


def read_info(path: StoragePath | str) -> RowGroupInfo:
    """What a row-group file says about itself (raises FileNotFoundError when it is gone)."""
    path = storage_path(path)
    try:
        with path.open_arrow() as source:
            kv = pq.read_schema(source).metadata
    except FileNotFoundError:
        raise
    except (OSError, pa.ArrowException) as exc:
        raise DatasetDamagedError(
            f"row-group file {path} is unreadable ({str(exc)[:200]}). It was not changed; restore it from a "
            "backup, or move it aside and resume to regenerate that row group"
        ) from exc
    return RowGroupInfo.from_kv(kv, path)


def read_num_rows(path: StoragePath | str) -> int:
    """Rows of a parquet file, from its footer (raises ``DatasetDamagedError`` when unreadable)."""
    path = storage_path(path)
    try:
        with path.open_arrow() as source:
            return pq.ParquetFile(source).metadata.num_rows
    except (OSError, pa.ArrowException) as exc:
        raise DatasetDamagedError(f"{path} is unreadable ({str(exc)[:200]}); it was not changed") from exc


def read_table(path: StoragePath | str) -> pa.Table:
    path = storage_path(path)
    try:
        if path.is_local:
            with path.open_arrow() as source:
                return pq.read_table(source)
        # Whole: one GET for a remote file, rather than one per column chunk.
        return pq.read_table(pa.BufferReader(path.read_bytes()))
    except (OSError, pa.ArrowException) as exc:
        raise DatasetDamagedError(f"row-group file {path} is unreadable ({exc}); it was not changed") from exc


def strip_dd_metadata(table: pa.Table) -> pa.Table:
    meta = {k: v for k, v in (table.schema.metadata or {}).items() if not k.startswith(PREFIX.encode())}
    return table.replace_schema_metadata(meta or None)
