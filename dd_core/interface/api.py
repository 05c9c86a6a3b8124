"""The Python API: ``load_config``, ``preview``, ``generate``."""

from __future__ import annotations

import datetime as dt
import itertools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from dd_core.config import ConfigSource, DatasetConfig, load_config
from dd_core.engine import apply_processors, generate_row_group
from dd_core.engine.llm.runtime import LLMRuntime, ModelOverride
from dd_core.engine.llm.usage import ModelUsage, merge_usage
from dd_core.engine.pipeline import RowGroupJob, produce_row_groups
from dd_core.errors import DDConfigError
from dd_core.fingerprinting import fingerprint
from dd_core.resume import Action, ResumeMode, ResumePlan, plan_resume
from dd_core.storage.dataset_folder import DatasetWriter, FolderScan, iter_row_group_tables, scan_folder, write_streamed
from dd_core.storage.filesystems import StoragePath, storage_path
from dd_core.storage.layout import FINAL_FILE, PARQUET_DIR, DatasetLayout
from dd_core.storage.lock import dataset_lock
from dd_core.storage.metadata import DatasetMetadata
from dd_core.storage.row_group_files import read_table

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger("dd")

#: Called after each finished row group with (done, total) row-group counts.
ProgressCallback = Callable[[int, int], None]


@dataclass
class DatasetResult:
    #: The dataset folder: a ``Path`` on the local disk, a ``StoragePath`` on object storage.
    path: Path | StoragePath
    metadata: dict
    #: True when the dataset was already complete and nothing was generated.
    already_complete: bool
    generated_row_groups: int
    seconds: float

    @property
    def dataset_files(self) -> list[Path | StoragePath]:
        return [_user_path(f) for f in dataset_files(self.path)]

    @property
    def num_records(self) -> int:
        return int(self.metadata["actual_num_records"])

    @property
    def llm_usage(self) -> dict[str, dict]:
        """Per model alias, accumulated over every run that wrote this dataset."""
        return self.metadata.get("llm_usage", {})

    def load(self) -> pd.DataFrame:
        return load_dataset(self.path)


def preview(config: ConfigSource, num_records: int = 10) -> pd.DataFrame:
    """A few rows of row group 0 after processors, nothing written."""
    config = load_config(config)
    return apply_processors(config, generate_row_group(config, 0, num_records)).to_pandas()


def generate(
    config: ConfigSource,
    num_records: int,
    *,
    buffer_size: int = 1000,
    artifact_path: str | Path = "artifacts",  # a local folder or s3://bucket/prefix
    dataset_name: str | None = None,
    resume: ResumeMode | str = ResumeMode.IF_POSSIBLE,
    progress: ProgressCallback | None = None,
    model_overrides: dict[str, ModelOverride] | None = None,
    workers: int = 1,
) -> DatasetResult:
    """Generate ``num_records`` records into ``<artifact_path>/<dataset_name>/``, resumably.

    See DESIGN.md's resume matrix for what each ``resume`` mode does with an existing folder.
    ``model_overrides`` replaces endpoints, keys or limits of model aliases for this run only.
    ``workers`` > 1 produces row groups in that many processes (same data, same limits).
    """
    started = time.perf_counter()
    config = load_config(config)
    mode = ResumeMode.coerce(resume)
    name = dataset_name or config.name or "dataset"
    _check_name(name)
    fp = fingerprint(config)
    layout = DatasetLayout(storage_path(artifact_path) / name)
    plan = _plan(mode, scan_folder(layout), fp["config_hash"], num_records, buffer_size, layout)
    if plan.action is Action.NEW_FOLDER:
        layout = _fresh_layout(layout)
        mode = ResumeMode.IF_POSSIBLE  # the new folder is empty: create
    with dataset_lock(layout):
        scan = scan_folder(layout)  # authoritative, under the lock
        plan = _plan(mode, scan, fp["config_hash"], num_records, buffer_size, layout)
        if plan.action is Action.ALREADY_COMPLETE:
            log.debug("%s is already complete (%d records); nothing generated", layout.root, scan.metadata.actual_num_records)
            return DatasetResult(_user_path(layout.root), scan.metadata.to_json(), True, 0, time.perf_counter() - started)
        writer = DatasetWriter(layout, _metadata_for_run(scan, name, fp, config, num_records, buffer_size))
        writer.start(_resolved_config(config, fp), scan.unrecorded)
        llm = LLMRuntime(cache_dir=layout.llm_cache, overrides=model_overrides or {})
        _write_row_groups(config, writer, plan, buffer_size, llm, progress, workers)
        _finalize(config, writer, plan)
        return DatasetResult(_user_path(layout.root), writer.metadata.to_json(), False, len(plan.generate), time.perf_counter() - started)


def _write_row_groups(
    config: DatasetConfig, writer: DatasetWriter, plan: ResumePlan, buffer_size: int, llm: LLMRuntime, progress: ProgressCallback | None, workers: int
) -> None:
    """Produce the plan's row groups (pipelined, in ``workers`` processes); each is written
    crash-safely by its producer and recorded here, as it finishes, as a checkpoint."""
    usage = {alias: ModelUsage.from_json(u) for alias, u in writer.metadata.extra.get("llm_usage", {}).items()}
    total = len(plan.generate)
    jobs = (RowGroupJob(index, plan.sizes[index], writer.layout.batch(index)) for index in plan.generate)
    with produce_row_groups(config, jobs, buffer_size=buffer_size, llm=llm, workers=max(1, min(workers, total))) as produced:
        for done, part in enumerate(produced, start=1):
            if part.usage:
                writer.metadata.extra["llm_usage"] = {alias: u.to_json() for alias, u in merge_usage(usage, part.usage).items()}
            writer.record_row_group(part.info)
            if progress:
                progress(done, total)


def _user_path(root: StoragePath) -> Path | StoragePath:
    return root.local if root.is_local else root


def _plan(mode: ResumeMode, scan: FolderScan, config_hash: str, num_records: int, buffer_size: int, layout: DatasetLayout) -> ResumePlan:
    return plan_resume(mode, scan.found, config_hash, num_records, buffer_size, location=f"dataset folder {layout.root}")


def _check_name(name: str) -> None:
    if not name or "/" in name or name in (".", "..") or name.startswith("."):
        raise DDConfigError(f"dataset name {name!r} must be a plain folder name (no '/', not starting with '.')")


def _fresh_layout(layout: DatasetLayout) -> DatasetLayout:
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    for n in itertools.count(1):
        candidate = layout.root.with_name(f"{layout.name}_{stamp}" + (f"-{n}" if n > 1 else ""))
        if not candidate.exists():
            log.info("%s exists; writing a new dataset to %s", layout.root, candidate)
            return DatasetLayout(candidate)
    raise AssertionError("unreachable")


def _metadata_for_run(scan: FolderScan, name: str, fp: dict, config: DatasetConfig, num_records: int, buffer_size: int) -> DatasetMetadata:
    if scan.metadata is not None:
        scan.metadata.num_records = num_records
        return scan.metadata
    return DatasetMetadata(
        dataset_name=name,
        config_hash=fp["config_hash"],
        config_hash_algo=fp["config_hash_algo"],
        config_hash_version=fp["config_hash_version"],
        seed=config.seed,
        num_records=num_records,
        buffer_size=buffer_size,
    )


def _resolved_config(config: DatasetConfig, fp: dict) -> dict:
    return {"fingerprint": fp, "config": config.model_dump(mode="json")}


def _finalize(config: DatasetConfig, writer: DatasetWriter, plan: ResumePlan) -> None:
    """Verify every finished file, run processors once, then mark the dataset complete."""
    writer.verify()
    if not config.processors:
        writer.finish(PARQUET_DIR)
        return
    indices = sorted(plan.sizes)
    tables = (apply_processors(config, t) for t in iter_row_group_tables(writer.layout, indices))
    first = next(tables)
    write_streamed(writer.layout.final, itertools.chain([first], tables), first.schema)
    writer.finish(FINAL_FILE)


def dataset_files(path: str | Path | StoragePath) -> list[StoragePath]:
    """The files of a finished dataset, in row order."""
    layout = DatasetLayout(storage_path(path))
    meta = scan_folder(layout).metadata
    if meta is None or meta.dataset_path is None:
        raise DDConfigError(f"{layout.root} holds no finished dataset (see 'dd status {layout.root}')")
    if meta.dataset_path == FINAL_FILE:
        return [layout.final]
    return [layout.batch(i) for i in sorted(meta.completed)]


def load_dataset(path: str | Path | StoragePath) -> pd.DataFrame:
    import pyarrow as pa

    tables = [read_table(f) for f in dataset_files(path)]
    return pa.concat_tables(tables).replace_schema_metadata(None).to_pandas()
