"""``dd export``: stream a finished dataset into one JSONL, CSV or parquet file."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from dd_core.interface.api import dataset_files
from dd_core.storage.atomic import fsync_dir, temp_path_for
from dd_core.storage.row_group_files import strip_dd_metadata

ExportFormat = Literal["jsonl", "csv", "parquet"]


def _batches(path: str) -> Iterator[pa.RecordBatch]:
    for file in dataset_files(path):
        yield from pq.ParquetFile(file.arrow_source()).iter_batches(batch_size=10_000)


def _flat(batch: pa.RecordBatch) -> pa.Table:
    """CSV has no nested values: struct fields become columns such as ``person.first_name``."""
    table = pa.Table.from_batches([batch])
    while any(pa.types.is_struct(f.type) for f in table.schema):
        table = table.flatten()
    return table


def export_dataset(path: str, fmt: ExportFormat, output: str | Path) -> int:
    """Write the dataset at ``path`` to ``output`` one batch at a time; returns rows written."""
    output = Path(output)
    tmp = temp_path_for(output)
    rows = 0
    try:
        with open(tmp, "wb") as sink:
            writer = None
            for batch in _batches(path):
                if fmt == "jsonl":
                    sink.write("".join(json.dumps(row, default=str, ensure_ascii=False) + "\n" for row in batch.to_pylist()).encode())
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
    finally:
        tmp.unlink(missing_ok=True)
    return rows
