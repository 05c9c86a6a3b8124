"""The Python API: ``load_config``, ``preview``, ``generate``, ``resume_dataset``."""

from __future__ import annotations

import datetime as dt
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from dd_core.config import ConfigSource, DatasetConfig, load_config
from dd_core.engine import apply_processors, generate_row_group
from dd_core.engine.callable_sandbox import check_callables
from dd_core.engine.in_process import run_row_group
from dd_core.engine.llm.cost import Spend, priced
from dd_core.engine.llm.probe import reach_models
from dd_core.engine.llm.runtime import LLMRuntime, ModelOverride
from dd_core.engine.llm.usage import ModelUsage, merge_usage
from dd_core.engine.pipeline import RowGroupJob, produce_row_groups
from dd_core.engine.worker_count import worker_count
from dd_core.errors import DatasetDamagedError, DDConfigError, DDUsageError, ResumeConflictError
from dd_core.fingerprinting import Fingerprint, fingerprint
from dd_core.interface.combine import combine_row_groups
from dd_core.interrupts import Interrupted, signal_number
from dd_core.log import get_logger
from dd_core.resume import Action, Found, ResumeMode, ResumePlan, plan_resume, row_group_sizes
from dd_core.storage.dataset_folder import (
    DatasetWriter,
    FolderScan,
    read_finished_tables,
    record_interval,
    remove_unstarted,
    scan_folder,
    verify_final_file,
    verify_row_groups,
)
from dd_core.storage.filesystems import StoragePath, storage_path
from dd_core.storage.layout import FINAL_FILE, PARQUET_DIR, DatasetLayout
from dd_core.storage.lock import dataset_lock
from dd_core.storage.metadata import DatasetMetadata, load_metadata

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

log = get_logger("dd")

#: Rows ``preview`` makes at most (it generates them in memory and prints them).
MAX_PREVIEW_RECORDS = 10_000
#: Bytes of a dataset folder's name (file systems allow 255; dd may add a ``_<timestamp>`` suffix).
MAX_NAME_BYTES = 200

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
    return preview_table(config, num_records).to_pandas()


def preview_table(config: ConfigSource, num_records: int = 10) -> pa.Table:
    """``preview`` as an Arrow table (``ddsynth preview`` reads it without pandas)."""
    config = load_config(config)
    _check_preview_size(num_records)
    check_callables(config)
    reach_models(config, LLMRuntime())  # a server that is down or refuses the key: one message, at once
    return apply_processors(config, generate_row_group(config, 0, num_records))


def preview_candidates(config: ConfigSource, num_records: int = 10) -> pd.DataFrame:
    """For a config with an ``accept`` rule: row group 0's candidates in stream order with the
    rule's verdict (``verdict``: accepted or rejected; ``candidate``: the position in the
    stream), before processors, so validator columns show why; nothing written. Candidates
    accepted after the row group was full are not shown."""
    return preview_candidates_table(config, num_records).to_pandas()


def preview_candidates_table(config: ConfigSource, num_records: int = 10) -> pa.Table:
    """``preview_candidates`` as an Arrow table (``ddsynth preview`` reads it without pandas)."""
    import pyarrow as pa  # as in load_dataset: the module loads without pyarrow

    config = load_config(config)
    if config.accept is None:
        raise DDUsageError("the config has no 'accept' rule, so its rows have no verdicts; use preview")
    _check_preview_size(num_records)
    check_callables(config)
    reach_models(config, LLMRuntime())
    result = run_row_group(config.model_copy(update={"keep_rejected": True}), 0, num_records)
    kept = result.table.add_column(0, "verdict", pa.array(["accepted"] * result.table.num_rows))
    kept = kept.add_column(0, "candidate", pa.array(result.kept_candidates or [], pa.int64()))
    rejected = result.rejected.rename_columns(["candidate", *result.rejected.column_names[1:]])
    rejected = rejected.add_column(1, "verdict", pa.array(["rejected"] * rejected.num_rows))
    both = pa.concat_tables([kept, rejected.cast(kept.schema)])
    return both.sort_by("candidate")


def _check_preview_size(num_records: int) -> None:
    if not (isinstance(num_records, int) and 1 <= num_records <= MAX_PREVIEW_RECORDS):
        raise DDUsageError(
            f"preview makes 1 to {MAX_PREVIEW_RECORDS:,} records, not {num_records!r}; use 'ddsynth generate' for more"
        )


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
    workers: int | None = 1,
) -> DatasetResult:
    """Generate ``num_records`` records into ``<artifact_path>/<dataset_name>/``, resumably.

    ``resume``: with an existing folder of the same config, ``if_possible`` (the default) and
    ``always`` continue it, ``never`` starts a new folder beside it; another config's data, or
    files without metadata, are a ``ResumeConflictError`` unless ``never`` (see README, Resuming).
    ``model_overrides`` replaces endpoints, keys or limits of model aliases for this run only.
    ``workers`` > 1 produces row groups in that many processes (same data, same limits);
    None lets dd choose (``dd_core.engine.worker_count``: the cores, fewer for a small job).
    """
    started = time.perf_counter()
    config = load_config(config)
    mode = ResumeMode.coerce(resume)
    name = dataset_name or config.name or "dataset"
    _check_name(name)
    record_every = record_interval()
    total = row_group_sizes(
        num_records, buffer_size
    ).count  # an impossible target is a usage error before anything else
    fp = fingerprint(config)
    llm = LLMRuntime(overrides=model_overrides or {})
    llm.check_endpoints(config)  # an unset key or a bad URL fails before a folder exists
    check_callables(config)  # a callable validator that cannot be imported: before any LLM call
    layout = DatasetLayout(_artifact_root(artifact_path) / name)
    try:
        scan = scan_folder(layout)
        plan = _plan(mode, scan, fp.config_hash, num_records, buffer_size, layout)
    except (DatasetDamagedError, ResumeConflictError):
        if not layout.root.exists():
            raise  # no folder, no writer in it
        plan = None  # judged again under the lock: while another process writes, the answer is "locked"
    if plan is not None and plan.action is Action.ALREADY_COMPLETE:
        # Nothing to write, so no lock to take (a finished dataset on read-only storage is fine).
        return _already_complete(layout, scan.metadata, started)
    check_spend: dict[str, Spend] = {}
    if plan is None or plan.generate:
        # Every model answers before a folder is made or a row group started. A folder already
        # begun with this config had its servers' way of taking JSON checked by that first run.
        begun = plan is not None and scan.metadata is not None and scan.metadata.config_hash == fp.config_hash
        check_spend = reach_models(config, llm, check_structured=not begun)
    if plan is not None and plan.action is Action.NEW_FOLDER:
        layout = _fresh_layout(layout)
        mode = ResumeMode.IF_POSSIBLE  # the new folder is empty: create
    writer: DatasetWriter | None = None
    new_root, unstarted = not layout.root.exists(), False
    try:
        with dataset_lock(layout):
            scan = scan_folder(layout)  # authoritative, under the lock
            plan = _plan(mode, scan, fp.config_hash, num_records, buffer_size, layout)
            if plan.action is Action.ALREADY_COMPLETE:
                return _already_complete(layout, scan.metadata, started)
            meta = _metadata_for_run(scan, name, fp, config, num_records, buffer_size)
            writer = DatasetWriter(layout, meta, record_every)
            try:
                writer.start(
                    config.resolved_dump(),
                    scan.unrecorded,
                    priced(check_spend, {m.alias: m.price for m in config.models}),
                )
                llm.cache_dir = layout.llm_cache
                try:
                    _write_row_groups(config, writer, plan, buffer_size, llm, progress, workers)
                except BaseException:
                    writer.settle_after_stop()  # the producers have stopped: tidy and count what they finished
                    raise
                _finalize(config, writer, plan)
            except DDConfigError:
                # Found only at run time (a template past its render limits): leave no half-made dataset.
                unstarted = scan.found.kind is Found.NOTHING and not writer.metadata.completed
                if unstarted:
                    remove_unstarted(layout)
                raise
            return DatasetResult(
                _user_path(layout.root),
                writer.metadata.to_json(),
                False,
                len(plan.generate),
                time.perf_counter() - started,
            )
    except DDConfigError:
        if unstarted and new_root:
            remove_unstarted(layout, root=True)  # the lock is released: its file and the folder go too
        raise
    except KeyboardInterrupt as exc:
        if writer is None:
            raise Interrupted(signal_number(exc), None, 0, total) from exc
        raise Interrupted(signal_number(exc), _user_path(layout.root), len(writer.metadata.completed), total) from exc


def resume_dataset(
    path: str | Path | StoragePath,
    *,
    progress: ProgressCallback | None = None,
    model_overrides: dict[str, ModelOverride] | None = None,
    workers: int | None = 1,
) -> DatasetResult:
    """Continue the dataset in folder ``path`` from the folder alone: its ``config.json``, and the
    target and buffer size in its ``metadata.json`` (for when the original config is gone)."""
    layout = DatasetLayout(storage_path(path))
    meta = _dataset_metadata(layout)
    try:
        config_text = layout.config.read_text()
    except FileNotFoundError:
        raise DatasetDamagedError(
            f"{layout.root} has a metadata.json but no config.json, so its config is unknown; nothing was changed"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetDamagedError(f"{layout.config} is unreadable ({str(exc)[:200]}); nothing was changed") from exc
    try:
        config = load_config(config_text, base_dir=layout.root.local if layout.root.is_local else None)
    except DDConfigError as exc:
        raise DatasetDamagedError(
            f"{layout.config} is not a config dd accepts ({str(exc)[:500]}); nothing was changed"
        ) from exc
    current = fingerprint(config).config_hash
    if current != meta.config_hash:
        raise DatasetDamagedError(
            f"{layout.config} gives config {current}, but the dataset was made with {meta.config_hash}; "
            "config.json was edited or belongs to another dataset. Nothing was changed; restore it, or resume "
            "with the original config: ddsynth generate CONFIG --num-records ... --dataset-name ..."
        )
    return generate(
        config,
        meta.num_records,
        buffer_size=meta.buffer_size,
        artifact_path=layout.root.parent,
        dataset_name=layout.name,
        resume=ResumeMode.ALWAYS,
        progress=progress,
        model_overrides=model_overrides,
        workers=workers,
    )


def _write_row_groups(
    config: DatasetConfig,
    writer: DatasetWriter,
    plan: ResumePlan,
    buffer_size: int,
    llm: LLMRuntime,
    progress: ProgressCallback | None,
    workers: int | None,
) -> None:
    """Produce the plan's row groups (pipelined, in ``workers`` processes); each is written
    crash-safely by its producer and recorded here, as it finishes, as a checkpoint (the
    writer syncs the parquet folder once per record, not each file's producer)."""
    usage = {alias: ModelUsage.from_json(u) for alias, u in writer.metadata.extra.get("llm_usage", {}).items()}
    total = len(plan.generate)
    jobs = (
        RowGroupJob(index, plan.sizes[index], writer.layout.batch(index), sync_folder=False, digest=False)
        for index in plan.generate
    )
    workers = worker_count(config, sum(plan.sizes[index] for index in plan.generate), total, workers)
    with produce_row_groups(config, jobs, buffer_size=buffer_size, llm=llm, workers=workers) as produced:
        for done, part in enumerate(produced, start=1):
            if part.usage:
                writer.metadata.extra["llm_usage"] = {
                    alias: u.to_json() for alias, u in merge_usage(usage, part.usage).items()
                }
            writer.record_row_group(part.info, with_usage=bool(part.usage))
            if progress:
                progress(done, total)


def _user_path(root: StoragePath) -> Path | StoragePath:
    return root.local if root.is_local else root


def _plan(
    mode: ResumeMode, scan: FolderScan, config_hash: str, num_records: int, buffer_size: int, layout: DatasetLayout
) -> ResumePlan:
    return plan_resume(
        mode, scan.found, config_hash, num_records, buffer_size, location=f"dataset folder {layout.root}"
    )


def _check_name(name: str) -> None:
    if (
        not isinstance(name, str)
        or not name
        or "/" in name
        or name.startswith(".")
        or not name.isprintable()
        or len(name.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES
    ):
        shown = repr(name[:60]) + ("..." if isinstance(name, str) and len(name) > 60 else "")
        raise DDUsageError(
            f"dataset name {shown} must be a plain folder name: at most {MAX_NAME_BYTES} bytes, no '/', "
            "no control characters, not starting with '.'"
        )


def _artifact_root(artifact_path: str | Path) -> StoragePath:
    """The folder that holds dataset folders; a file where a folder belongs is a usage error."""
    root = storage_path(artifact_path)
    if root.is_local:
        existing = root.local
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        if not existing.is_dir():
            what = "is a file" if existing == root.local else f"is inside {existing}, which is a file"
            raise DDUsageError(f"artifact path {root} {what}, not a folder; pass a folder with --artifact-path")
    return root


def _dataset_metadata(layout: DatasetLayout) -> DatasetMetadata:
    """The metadata of a dataset folder, or a usage error saying why ``layout`` is not one."""
    if layout.root.is_local and layout.root.local.is_file():
        raise DDUsageError(f"{layout.root} is a file, not a dataset folder")
    if not layout.root.exists():
        raise DDUsageError(f"{layout.root} does not exist; expected a dataset folder made by ddsynth generate")
    if not layout.metadata.exists():
        has_data = bool(layout.parquet_dir.exists() and layout.parquet_dir.list_names())
        detail = "it has row-group files but no metadata.json" if has_data else "it has no metadata.json"
        raise DDUsageError(
            f"{layout.root} is not a dd dataset folder ({detail}); expected a folder made by ddsynth generate"
        )
    return load_metadata(layout.metadata)


def _already_complete(layout: DatasetLayout, meta: DatasetMetadata, started: float) -> DatasetResult:
    _verify_finished(layout, meta)
    log.debug("%s is already complete (%d records); nothing generated", layout.root, meta.actual_num_records)
    return DatasetResult(_user_path(layout.root), meta.to_json(), True, 0, time.perf_counter() - started)


def _verify_finished(layout: DatasetLayout, meta: DatasetMetadata) -> None:
    """Before a finished dataset is reported or read: every file is the one its metadata records."""
    verify_row_groups(layout, meta)
    if meta.dataset_path == FINAL_FILE:
        verify_final_file(layout, meta)


def _fresh_layout(layout: DatasetLayout) -> DatasetLayout:
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    for n in itertools.count(1):
        candidate = layout.root.with_name(f"{layout.name}_{stamp}" + (f"-{n}" if n > 1 else ""))
        if not candidate.exists():
            log.info("%s exists; writing a new dataset to %s", layout.root, candidate)
            return DatasetLayout(candidate)
    raise AssertionError("unreachable")


def _metadata_for_run(
    scan: FolderScan, name: str, fp: Fingerprint, config: DatasetConfig, num_records: int, buffer_size: int
) -> DatasetMetadata:
    if scan.metadata is not None:
        scan.metadata.num_records = num_records
        return scan.metadata
    return DatasetMetadata(
        dataset_name=name,
        config_hash=fp.config_hash,
        config_hash_algo=fp.config_hash_algo,
        config_hash_version=fp.config_hash_version,
        seed=config.seed,
        num_records=num_records,
        buffer_size=buffer_size,
    )


def _finalize(config: DatasetConfig, writer: DatasetWriter, plan: ResumePlan) -> None:
    """Verify every finished file, run processors once, then mark the dataset complete."""
    writer.verify()
    if not config.processors:
        writer.finish(PARQUET_DIR)
        return
    combine_row_groups(config, (writer.layout.batch(index) for index in sorted(plan.sizes)), writer.layout.final)
    writer.finish(FINAL_FILE)


def dataset_files(path: str | Path | StoragePath) -> list[StoragePath]:
    """The files of a finished dataset, in row order, each verified against the metadata
    (index, row counts, config hash) from its footer."""
    layout = DatasetLayout(storage_path(path))
    meta = _finished_metadata(layout)
    _verify_finished(layout, meta)
    if meta.dataset_path == FINAL_FILE:
        return [layout.final]
    return [layout.batch(i) for i in meta.completed]


def _finished_metadata(layout: DatasetLayout) -> DatasetMetadata:
    meta = _dataset_metadata(layout)
    if meta.status != "complete" or meta.dataset_path is None:
        raise DDUsageError(
            f"{layout.root} is not finished yet ({len(meta.completed)} of {meta.num_row_groups} row groups); "
            f"continue it with: ddsynth resume {layout.root}"
        )
    return meta


def load_dataset(path: str | Path | StoragePath) -> pd.DataFrame:
    """A finished dataset as one DataFrame; each file checked against the metadata as it is read."""
    import pyarrow as pa

    layout = DatasetLayout(storage_path(path))
    meta = _finished_metadata(layout)
    tables = list(read_finished_tables(layout, meta))
    return pa.concat_tables(tables).replace_schema_metadata(None).to_pandas()
