"""Seed-dataset columns: rows sampled from a local parquet or CSV file.

The file's content hash, not its path, enters the fingerprint: moving the file changes
nothing, editing it changes the data.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from pydantic import PrivateAttr, ValidationInfo, model_validator

from dd_core.config.base import FieldProblem
from dd_core.config.columns import COLUMN_NAME, ColumnConfig

SUFFIXES = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv"}


class SeedDatasetColumn(ColumnConfig):
    """Adds the file's columns (all, or those listed) to every row.

    ``order: ordered`` walks the file from the row group's global offset, wrapping around;
    ``shuffled`` walks a seeded permutation (every file row once before any repeats), or draws
    independently with ``replace: true``.
    """

    type: Literal["seed_dataset"]
    path: str
    columns: list[str] | None = None
    order: Literal["ordered", "shuffled"] = "ordered"
    replace: bool = False

    fingerprint_exclude = frozenset({"description", "path"})
    _resolved: Path = PrivateAttr()
    _sha256: str = PrivateAttr()
    _available: list[str] = PrivateAttr()

    @model_validator(mode="after")
    def _read_file(self, info: ValidationInfo) -> SeedDatasetColumn:
        if self.replace and self.order == "ordered":
            raise FieldProblem(
                "replace", "replace: true needs order: shuffled (ordered rows are never drawn twice at random)"
            )
        base = Path((info.context or {}).get("base_dir", "."))
        path = Path(self.path).expanduser()
        resolved = (path if path.is_absolute() else base / path).resolve()
        if resolved.suffix.lower() not in SUFFIXES:
            raise FieldProblem("path", f"seed file {resolved} must end in .parquet, .pq or .csv")
        if resolved.is_dir():
            raise FieldProblem("path", f"seed file {resolved} is a directory; expected a .parquet, .pq or .csv file")
        if not resolved.is_file():
            raise FieldProblem(
                "path", f"seed file {resolved} does not exist (relative paths start at the config file's folder)"
            )
        self._resolved = resolved
        try:
            self._sha256 = _file_sha256(resolved)
            table = load_seed_table(resolved, self._sha256)
        except (pa.ArrowException, OSError) as exc:
            raise FieldProblem("path", f"cannot read seed file {resolved}: {str(exc)[:300]}") from exc
        if table.num_rows == 0:
            raise FieldProblem("path", f"seed file {resolved} has no rows")
        self._available = table.column_names
        missing = [c for c in self.columns or [] if c not in self._available]
        if missing:
            raise FieldProblem("columns", f"seed file {resolved} has no column(s) {missing}; it has {self._available}")
        bad = [c for c in self.output_names() if not COLUMN_NAME.match(c)]
        if bad:
            raise FieldProblem(
                "columns", f"seed file column(s) {bad} are not valid column names; list usable ones in 'columns'"
            )
        return self

    @property
    def resolved_path(self) -> Path:
        """The seed file's absolute path (what a dataset folder's config.json records)."""
        return self._resolved

    def output_names(self) -> list[str]:
        return list(self.columns) if self.columns is not None else list(self._available)

    def table(self) -> pa.Table:
        return load_seed_table(self._resolved, self._sha256).select(self.output_names())

    def fingerprint_view(self) -> dict[str, Any]:
        return {**super().fingerprint_view(), "content_sha256": self._sha256}


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@lru_cache(maxsize=8)
def load_seed_table(path: Path, sha256: str) -> pa.Table:
    """The whole seed file, read once per process (keyed by content so an edit reloads it)."""
    if SUFFIXES[path.suffix.lower()] == "parquet":
        return pq.read_table(path)
    return pacsv.read_csv(path)
