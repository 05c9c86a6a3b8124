"""``metadata.json``: the dataset's run parameters and progress, replaced atomically.

Completed row groups are stored (on disk and in memory) as index ranges plus the few whose row
counts differ from ``buffer_size``, so the file stays small, its rewrite after every row group
cheap, and reading it costs nothing per row group, even with millions of them.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from dd_core.errors import DatasetDamagedError
from dd_core.index_ranges import IndexRanges, RangeMap
from dd_core.resume import MAX_BUFFER_SIZE, MAX_ROW_GROUPS, Checkpoint, RangeCheckpoints
from dd_core.storage.filesystems import StoragePath, storage_path
from dd_core.storage.layout import FINAL_FILE, PARQUET_DIR
from dd_core.storage.row_group_files import RowGroupIdentity

FORMAT_VERSION = 1
IN_PROGRESS = "in_progress"
COMPLETE = "complete"


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


def library_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ddsynth")
    except PackageNotFoundError:
        return "0+unknown"


@dataclass(frozen=True)
class RowCounts:
    requested: int
    rows: int


class CompletedRowGroups(RangeMap[RowCounts]):
    """Finished row groups by index: ranges of indices, plus the few whose counts differ from
    ``(buffer_size, buffer_size)``. Totals are arithmetic; nothing is expanded per row group."""

    def __init__(
        self, buffer_size: int, indices: IndexRanges | None = None, irregular: Mapping[int, RowCounts] | None = None
    ):
        super().__init__(
            indices if indices is not None else IndexRanges(), RowCounts(buffer_size, buffer_size), irregular
        )
        self.buffer_size = buffer_size

    @classmethod
    def of(cls, buffer_size: int, counts: Mapping[int, RowCounts]) -> CompletedRowGroups:
        done = cls(buffer_size)
        for index, count in counts.items():
            done[index] = count
        return done

    @property
    def rows(self) -> int:
        return self.buffer_size * (len(self.indices) - len(self.irregular)) + sum(
            c.rows for c in self.irregular.values()
        )

    @property
    def dropped_rows(self) -> int:
        return sum(c.requested - c.rows for c in self.irregular.values())

    def checkpoints(self, config_hash: str) -> RangeCheckpoints:
        """The same row groups as resume checkpoints (no object per row group)."""
        irregular = {i: Checkpoint(config_hash, c.requested, self.buffer_size) for i, c in self.irregular.items()}
        return RangeCheckpoints(self.indices, Checkpoint(config_hash, self.buffer_size, self.buffer_size), irregular)


@dataclass
class DatasetMetadata:
    dataset_name: str
    config_hash: str
    config_hash_algo: str
    config_hash_version: int
    seed: int
    num_records: int
    buffer_size: int
    completed: CompletedRowGroups = None  # type: ignore[assignment]  (set in __post_init__)
    status: str = IN_PROGRESS
    #: Relative path of the finished dataset ("parquet-files" or "dataset.parquet"), once complete.
    dataset_path: str | None = None
    created_at: str = field(default_factory=now_iso)
    updated_at: str = field(default_factory=now_iso)
    library_version: str = field(default_factory=library_version)
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.completed, CompletedRowGroups):
            self.completed = CompletedRowGroups.of(self.buffer_size, self.completed or {})

    @property
    def num_row_groups(self) -> int:
        return -(-self.num_records // self.buffer_size)

    @property
    def identity(self) -> RowGroupIdentity:
        """What each of the dataset's row-group files must say it is."""
        return RowGroupIdentity(self.config_hash, self.config_hash_version, self.buffer_size, self.seed)

    @property
    def actual_num_records(self) -> int:
        return self.completed.rows

    @property
    def dropped_rows(self) -> int:
        return self.completed.dropped_rows

    def to_json(self) -> dict[str, Any]:
        exceptions = {
            str(i): {"requested": c.requested, "rows": c.rows} for i, c in sorted(self.completed.irregular.items())
        }
        return {
            "format_version": FORMAT_VERSION,
            "dataset_name": self.dataset_name,
            "config_hash": self.config_hash,
            "config_hash_algo": self.config_hash_algo,
            "config_hash_version": self.config_hash_version,
            "seed": self.seed,
            "num_records": self.num_records,
            "buffer_size": self.buffer_size,
            "num_row_groups": self.num_row_groups,
            "actual_num_records": self.actual_num_records,
            "dropped_rows": self.dropped_rows,
            "num_completed_row_groups": len(self.completed),
            "completed_row_groups": self.completed.indices.ranges(),
            "row_group_rows": exceptions,
            "status": self.status,
            "dataset_path": self.dataset_path,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "library_version": self.library_version,
            **self.extra,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any], path: StoragePath) -> DatasetMetadata:
        """Every field checked before anything is built from it: a hand-edited or hostile file is
        "damaged" (exit 4), never a crash or a loop over a range it merely claims."""
        try:
            if data.get("format_version") != FORMAT_VERSION:
                raise ValueError(f"format_version {data.get('format_version')!r} (this dd reads {FORMAT_VERSION})")
            buffer_size = _whole(data, "buffer_size", 1, MAX_BUFFER_SIZE)
            num_records = _whole(data, "num_records", 1, MAX_ROW_GROUPS * buffer_size)
            row_groups = -(-num_records // buffer_size)
            indices = _ranges(data.get("completed_row_groups"), row_groups)
            irregular = _irregular(data.get("row_group_rows"), indices, buffer_size)
            status = _text(data, "status")
            if status not in (IN_PROGRESS, COMPLETE):
                raise ValueError(f"status {status[:40]!r} is neither {IN_PROGRESS!r} nor {COMPLETE!r}")
            dataset_path = data.get("dataset_path")
            if dataset_path not in (None, PARQUET_DIR, FINAL_FILE):
                raise ValueError(f"dataset_path {str(dataset_path)[:60]!r} is not {PARQUET_DIR!r} or {FINAL_FILE!r}")
            known = {f for f in cls.__dataclass_fields__} | set(_DERIVED)
            return cls(
                dataset_name=_text(data, "dataset_name"),
                config_hash=_text(data, "config_hash"),
                config_hash_algo=_text(data, "config_hash_algo"),
                config_hash_version=_whole(data, "config_hash_version", 0, 2**31),
                seed=_whole(data, "seed", 0, 2**63 - 1),
                num_records=num_records,
                buffer_size=buffer_size,
                completed=CompletedRowGroups(buffer_size, indices, irregular),
                status=status,
                dataset_path=dataset_path,
                created_at=_text(data, "created_at"),
                updated_at=_text(data, "updated_at"),
                library_version=_text(data, "library_version"),
                extra={k: v for k, v in data.items() if k not in known},
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise DatasetDamagedError(
                f"{path} is not valid dd metadata ({str(exc)[:300] if not isinstance(exc, KeyError) else f'{exc} is missing'}). Nothing was changed; "
                "the row-group files still describe themselves (see 'ddsynth status')"
            ) from exc

    def save(self, path: StoragePath, *, sync_folder: bool = True) -> None:
        self.updated_at = now_iso()
        path.write_atomic(
            json.dumps(self.to_json(), indent=2).encode(), fault_prefix="metadata", sync_folder=sync_folder
        )


def _whole(data: dict, key: str, low: int, high: int) -> int:
    value = data[key]
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{key} is {str(value)[:40]!r}, not a whole number")
    if not low <= value <= high:
        raise ValueError(f"{key} {value} is outside {low}..{high:,}")
    return value


def _text(data: dict, key: str) -> str:
    value = data[key]
    if not isinstance(value, str):
        raise TypeError(f"{key} is {str(value)[:40]!r}, not a string")
    return value


def _ranges(ranges: Any, row_groups: int) -> IndexRanges:
    """``[[start, end], ...]`` within the dataset's own target, checked before use."""
    if not isinstance(ranges, list):
        raise TypeError("completed_row_groups is not a list of [start, end] ranges")
    pairs = []
    for item in ranges:
        if not (
            isinstance(item, list)
            and len(item) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) for v in item)
        ):
            raise TypeError(f"completed_row_groups holds {str(item)[:40]}, not a [start, end] pair of whole numbers")
        start, end = item
        if not 0 <= start <= end < row_groups:
            raise ValueError(
                f"completed_row_groups range [{start}, {end}] is outside the dataset's {row_groups:,} row groups"
            )
        pairs.append((start, end))
    return IndexRanges(pairs)


def _irregular(rows: Any, indices: IndexRanges, buffer_size: int) -> dict[int, RowCounts]:
    if not isinstance(rows, dict):
        raise TypeError("row_group_rows is not an object")
    irregular = {}
    for key, value in rows.items():
        index = int(key) if isinstance(key, str) and key.isdigit() else None
        if index is None or index not in indices:
            raise ValueError(f"row_group_rows names row group {str(key)[:20]!r}, which is not a completed row group")
        counts = RowCounts(_whole(value, "requested", 1, buffer_size), _whole(value, "rows", 0, buffer_size))
        if counts.rows > counts.requested:
            raise ValueError(f"row group {index} has more rows ({counts.rows}) than requested ({counts.requested})")
        irregular[index] = counts
    return irregular


_DERIVED = (
    "format_version",
    "num_row_groups",
    "actual_num_records",
    "dropped_rows",
    "num_completed_row_groups",
    "completed_row_groups",
    "row_group_rows",
)

#: metadata.json is rewritten after every row group; one this large is not dd's.
MAX_METADATA_BYTES = 64 * 2**20


def load_metadata(path: StoragePath | str | os.PathLike) -> DatasetMetadata:
    path = storage_path(path)
    try:
        raw = path.read_bytes()
        if len(raw) > MAX_METADATA_BYTES:
            raise ValueError(f"it is {len(raw):,} bytes, more than dd ever writes")
        data = json.loads(raw)
    except IsADirectoryError as exc:
        raise DatasetDamagedError(f"{path} is a directory, not dd's metadata file; nothing was changed") from exc
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise DatasetDamagedError(
            f"{path} is unreadable or not JSON ({str(exc)[:200]}). Nothing was changed; the row-group files "
            "still describe themselves (see 'ddsynth status')"
        ) from exc
    if not isinstance(data, dict):
        raise DatasetDamagedError(f"{path} does not hold a JSON object; nothing was changed")
    return DatasetMetadata.from_json(data, path)
