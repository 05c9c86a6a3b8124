"""``ddsynth export``: stream a finished dataset into one JSONL, CSV or parquet file.

Every row-group file is verified against the metadata before anything is written (footers
only), the output never lands inside the dataset folder (symlinks resolved), and a failure at
any point leaves no partial output behind.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from dd_core.errors import DatasetDamagedError, DDUsageError
from dd_core.interface.api import dataset_files
from dd_core.storage.atomic import create_new, discard, fsync_dir, storage_failure, temp_path_for
from dd_core.storage.filesystems import StoragePath, storage_path
from dd_core.storage.row_group_files import strip_dd_metadata

ExportFormat = Literal["jsonl", "csv", "parquet"]


def _batches(files: list[StoragePath]) -> Iterator[pa.RecordBatch]:
    for file in files:
        try:
            with file.open_arrow() as source:
                yield from pq.ParquetFile(source).iter_batches(batch_size=10_000)
        except (OSError, pa.ArrowException) as exc:
            raise DatasetDamagedError(
                f"{file} is unreadable ({str(exc)[:200]}); it was not changed and nothing was exported"
            ) from exc


def _flat(batch: pa.RecordBatch) -> pa.Table:
    """CSV has no nested values: struct fields become columns such as ``person.first_name``."""
    table = pa.Table.from_batches([batch])
    while any(pa.types.is_struct(f.type) for f in table.schema):
        table = table.flatten()
    return table


def check_output(output: Path, dataset: StoragePath) -> Path:
    """Where export may write: a file (not a folder) in an existing folder, outside the dataset."""
    if output.is_dir():
        raise DDUsageError(f"output {output} is a directory; give the name of the file to write")
    if not output.parent.is_dir():
        raise DDUsageError(f"the folder of output {output} ({output.parent}) does not exist; create it first")
    if dataset.is_local:
        target, root = output.resolve(), dataset.local.resolve()
        if target == root or root in target.parents:
            raise DDUsageError(
                f"output {output} is inside the dataset folder {dataset} (as {target}); export writes outside it, "
                "so it can never overwrite finished data"
            )
    return output


def export_dataset(path: str, fmt: ExportFormat, output: str | Path) -> int:
    """Write the dataset at ``path`` to ``output`` one batch at a time; returns rows written."""
    files = dataset_files(path)
    output = check_output(Path(output), storage_path(path))
    tmp = temp_path_for(output)
    rows = 0
    try:
        sink_fd = create_new(tmp)
        with os.fdopen(sink_fd, "wb") as sink:
            writer = None
            for batch in _batches(files):
                if fmt == "jsonl":
                    sink.write(
                        "".join(
                            json.dumps(row, default=str, ensure_ascii=False) + "\n" for row in batch.to_pylist()
                        ).encode()
                    )
                elif fmt == "csv":
                    table = _flat(batch)
                    writer = writer or pacsv.CSVWriter(sink, table.schema)
                    writer.write_table(table)
                else:
                    table = strip_dd_metadata(pa.Table.from_batches([batch]))
                    writer = writer or pq.ParquetWriter(sink, table.schema)
                    writer.write_table(table)
                rows += batch.num_rows
            if writer is not None:
                writer.close()
            sink.flush()
            os.fsync(sink.fileno())
        os.replace(tmp, output)
        fsync_dir(output.parent)
    except OSError as exc:
        raise storage_failure(output, exc) from exc
    finally:
        discard(tmp)
    return rows
