"""``metadata.json``: the dataset's run parameters and progress, replaced atomically.

Completed row groups are stored as index ranges plus the few whose row counts differ from
``buffer_size``, so the file stays small (and its rewrite after every row group cheap) even
with 10,000 row groups.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from dataclasses import dataclass, field
from typing import Any

from dd_core.errors import DatasetDamagedError
from dd_core.storage.filesystems import StoragePath, storage_path

FORMAT_VERSION = 1
IN_PROGRESS = "in_progress"
COMPLETE = "complete"


def now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")


def library_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("dd")
    except PackageNotFoundError:
        return "0+unknown"


@dataclass(frozen=True)
class RowCounts:
    requested: int
    rows: int


@dataclass
class DatasetMetadata:
    dataset_name: str
    config_hash: str
    config_hash_algo: str
    config_hash_version: int
    seed: int
    num_records: int
    buffer_size: int
    completed: dict[int, RowCounts] = field(default_factory=dict)
    status: str = IN_PROGRESS
    #: Relative path of the finished dataset ("parquet-files" or "dataset.parquet"), once complete.
    dataset_path: str | None = None
    created_at: str = field(default_factory=now_iso)
    updated_at: str = field(default_factory=now_iso)
    library_version: str = field(default_factory=library_version)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def num_row_groups(self) -> int:
        return -(-self.num_records // self.buffer_size)

    @property
    def actual_num_records(self) -> int:
        return sum(c.rows for c in self.completed.values())

    @property
    def dropped_rows(self) -> int:
        return sum(c.requested - c.rows for c in self.completed.values())

    def to_json(self) -> dict[str, Any]:
        exceptions = {
            str(i): {"requested": c.requested, "rows": c.rows}
            for i, c in sorted(self.completed.items())
            if c.requested != self.buffer_size or c.rows != c.requested
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
            "completed_row_groups": to_ranges(sorted(self.completed)),
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
        try:
            if data.get("format_version") != FORMAT_VERSION:
                raise ValueError(f"format_version {data.get('format_version')!r} (this dd reads {FORMAT_VERSION})")
            buffer_size = int(data["buffer_size"])
            exceptions = {int(k): RowCounts(int(v["requested"]), int(v["rows"])) for k, v in data["row_group_rows"].items()}
            completed = {i: exceptions.get(i, RowCounts(buffer_size, buffer_size)) for i in from_ranges(data["completed_row_groups"])}
            known = {f for f in cls.__dataclass_fields__} | set(_DERIVED)
            return cls(
                dataset_name=str(data["dataset_name"]),
                config_hash=str(data["config_hash"]),
                config_hash_algo=str(data["config_hash_algo"]),
                config_hash_version=int(data["config_hash_version"]),
                seed=int(data["seed"]),
                num_records=int(data["num_records"]),
                buffer_size=buffer_size,
                completed=completed,
                status=str(data["status"]),
                dataset_path=data.get("dataset_path"),
                created_at=str(data["created_at"]),
                updated_at=str(data["updated_at"]),
                library_version=str(data["library_version"]),
                extra={k: v for k, v in data.items() if k not in known},
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise DatasetDamagedError(
                f"{path} is not valid dd metadata ({type(exc).__name__}: {exc}). Nothing was changed; "
                "the row-group files still describe themselves (see 'dd status')"
            ) from exc

    def save(self, path: StoragePath) -> None:
        self.updated_at = now_iso()
        path.write_atomic(json.dumps(self.to_json(), indent=2).encode(), fault_prefix="metadata")


_DERIVED = (
    "format_version",
    "num_row_groups",
    "actual_num_records",
    "dropped_rows",
    "num_completed_row_groups",
    "completed_row_groups",
    "row_group_rows",
)


def load_metadata(path: StoragePath | str | os.PathLike) -> DatasetMetadata:
    path = storage_path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DatasetDamagedError(
            f"{path} is unreadable or not JSON ({exc}). Nothing was changed; the row-group files "
            "still describe themselves (see 'dd status')"
        ) from exc
    if not isinstance(data, dict):
        raise DatasetDamagedError(f"{path} does not hold a JSON object; nothing was changed")
    return DatasetMetadata.from_json(data, path)


def to_ranges(indices: list[int]) -> list[list[int]]:
    """[0, 1, 2, 5, 6] -> [[0, 2], [5, 6]] (inclusive ranges)."""
    ranges: list[list[int]] = []
    for i in indices:
        if ranges and ranges[-1][1] == i - 1:
            ranges[-1][1] = i
        else:
            ranges.append([i, i])
    return ranges


def from_ranges(ranges: list[list[int]]) -> list[int]:
    return [i for start, end in ranges for i in range(int(start), int(end) + 1)]
