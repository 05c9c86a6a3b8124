"""What the pipeline is asked to produce, and what it hands back."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

import pyarrow as pa

from dd_core.config import DatasetConfig
from dd_core.engine.llm.usage import ModelUsage
from dd_core.engine.row_group import RowGroupResult
from dd_core.fingerprinting import fingerprint
from dd_core.storage.filesystems import StoragePath
from dd_core.storage.layout import rejected_path
from dd_core.storage.row_group_files import RowGroupIdentity, RowGroupInfo, write_row_group_file


@dataclass(frozen=True)
class RowGroupJob:
    """One row group to produce."""

    index: int
    num_rows: int
    #: Write the finished row group here (crash-safely); None hands the table back instead.
    path: StoragePath | None = None
    #: Several producers of one dataset at once (parallel Dagster runs): the producer holds
    #: this claim from before the row group starts until its file is written, in the process
    #: that writes it; a second claimant waits (see ``dd_core.storage.claims``).
    claim: StoragePath | None = None
    #: Hand back a file already at ``path`` that says it is this row group of this config and
    #: sizes (``reused``) instead of producing it again: one a parallel producer finished while
    #: this one waited for the claim, or one whose producer died before it was recorded.
    reuse_finished: bool = False
    #: The file's name is durable (its folder fsynced) before it is handed back, as an
    #: orchestrator reporting each file needs. False leaves that to the caller, who syncs the
    #: folder once for all files written since, before it records them (``DatasetWriter``).
    sync_folder: bool = True
    #: Hand back the sha256 of the written file (an orchestrator's data version).
    digest: bool = True


@dataclass
class ProducedRowGroup:
    """A finished row group: its self-description, LLM usage, and its table or written file."""

    info: RowGroupInfo
    usage: dict[str, ModelUsage]
    #: From the start of its row-wise stage (or its vectorised stage) to finished.
    seconds: float
    table: pa.Table | None = None
    path: StoragePath | None = None
    #: sha256 of the written file's bytes (with ``RowGroupJob.digest``).
    sha256: str | None = None
    #: Found finished at the job's path (``RowGroupJob.reuse_finished``), not produced now.
    reused: bool = False
    #: With ``keep_rejected`` and no ``path``: the candidates the rule rejected (else written beside the
    #: file), and the kept rows' positions among the candidates.
    rejected: pa.Table | None = None
    kept_candidates: list[int] | None = None

    @property
    def index(self) -> int:
        return self.info.row_group

    @property
    def dropped_rows(self) -> int:
        return self.info.requested_rows - self.info.num_rows


def identity_of(config: DatasetConfig, buffer_size: int) -> RowGroupIdentity:
    """What every row-group file of ``config``'s dataset in row groups of ``buffer_size`` says alike."""
    fp = fingerprint(config)
    return RowGroupIdentity(fp.config_hash, fp.config_hash_version, buffer_size, config.seed)


def finish(job: RowGroupJob, result: RowGroupResult, identity: RowGroupIdentity, started: float) -> ProducedRowGroup:
    """Describe a finished row group and, when the job says where, write it crash-safely (its
    rejected candidates first, so they exist whenever the row group does)."""
    acceptance = result.acceptance.to_json() if result.acceptance is not None else ""
    info = identity.info(job.index, job.num_rows, result.table.num_rows, result.llm_spend, acceptance)
    if job.path is None:
        return ProducedRowGroup(
            info,
            result.usage,
            time.perf_counter() - started,
            table=result.table,
            rejected=result.rejected,
            kept_candidates=result.kept_candidates,
        )
    if result.rejected is not None:
        write_row_group_file(rejected_path(job.path), result.rejected, info, digest=False)
    digest = write_row_group_file(job.path, result.table, info, sync_folder=job.sync_folder, digest=job.digest)
    return ProducedRowGroup(info, result.usage, time.perf_counter() - started, path=job.path, sha256=digest)


def finished_file(job: RowGroupJob, identity: RowGroupIdentity) -> ProducedRowGroup | None:
    """The file at ``job.path`` when the job may reuse it and it says it is this row group of
    this dataset; None when it is missing, damaged or another's."""
    if not job.reuse_finished or job.path is None:
        return None
    info = identity.finished_file(job.path, job.index, job.num_rows)
    if info is None:
        return None
    if job.sync_folder:
        job.path.parent.sync_folder()  # its producer may have died before making the name durable
    try:
        digest = hashlib.sha256(job.path.read_bytes()).hexdigest()
    except FileNotFoundError:
        return None
    return ProducedRowGroup(info, {}, 0.0, path=job.path, sha256=digest, reused=True)
