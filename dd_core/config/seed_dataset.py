"""Seed-dataset columns: rows sampled from a parquet or CSV file, local or remote (``s3://``,
``gs://``, ``az://``, ``abfs[s]://``, ``hf://datasets/org/name[@revision]/path``).

The file's content identity, not its location, enters the fingerprint: a local file's sha256,
a remote object's ETag or generation, a Hub file's content hash. Moving the file changes
nothing; editing it changes the data (and the fingerprint). The file is looked up once when the
config is loaded; rows are read later, a slice per row group (see ``storage.seed_files``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
from pydantic import PrivateAttr, ValidationInfo, model_validator

from dd_core.config.base import FieldProblem
from dd_core.config.columns import COLUMN_NAME, ColumnConfig
from dd_core.errors import StorageError
from dd_core.storage.seed_files import SeedFile, inspect_seed, seed_format


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
    _seed: SeedFile = PrivateAttr()

    @model_validator(mode="after")
    def _read_file(self, info: ValidationInfo) -> SeedDatasetColumn:
        if self.replace and self.order == "ordered":
            raise FieldProblem(
                "replace", "replace: true needs order: shuffled (ordered rows are never drawn twice at random)"
            )
        location = self._location(Path((info.context or {}).get("base_dir", ".")))
        if seed_format(location) is None:
            raise FieldProblem("path", f"seed file {location} must end in .parquet, .pq or .csv")
        try:
            self._seed = inspect_seed(location)
        except FileNotFoundError as exc:
            raise FieldProblem(
                "path", f"seed file {location} does not exist (relative paths start at the config file's folder)"
            ) from exc
        except IsADirectoryError as exc:
            raise FieldProblem(
                "path", f"seed file {location} is a directory; expected a .parquet, .pq or .csv file"
            ) from exc
        except (pa.ArrowException, OSError, StorageError, ValueError) as exc:
            raise FieldProblem("path", f"cannot read seed file {location}: {str(exc)[:400]}") from exc
        if self._seed.num_rows == 0:
            raise FieldProblem("path", f"seed file {location} has no rows")
        available = list(self._seed.columns)
        missing = [c for c in self.columns or [] if c not in available]
        if missing:
            raise FieldProblem("columns", f"seed file {location} has no column(s) {missing}; it has {available}")
        bad = [c for c in self.output_names() if not COLUMN_NAME.match(c)]
        if bad:
            raise FieldProblem(
                "columns", f"seed file column(s) {bad} are not valid column names; list usable ones in 'columns'"
            )
        return self

    def _location(self, base: Path) -> str:
        """A URL as it is; a local path made absolute (relative to the config file's folder)."""
        if "://" in self.path:
            return self.path
        path = Path(self.path).expanduser()
        return str((path if path.is_absolute() else base / path).resolve())

    @property
    def seed(self) -> SeedFile:
        return self._seed

    @property
    def resolved_path(self) -> str:
        """Where the seed file is (what a dataset folder's config.json records): an absolute
        path, or the URL."""
        return self._seed.location if self._seed.hub is None else self.path

    def output_names(self) -> list[str]:
        return list(self.columns) if self.columns is not None else list(self._seed.columns)

    def fingerprint_view(self) -> dict[str, Any]:
        return {**super().fingerprint_view(), **dict(self._seed.identity)}
