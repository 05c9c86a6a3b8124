"""Resume decisions: one pure function from (mode, what was found, current run) to a plan.

Two checkpoint sources feed it: a dataset folder (``scope="folder"``, where the folder name is
the identity and another fingerprint may be unrelated data) and Dagster's materializations
(``scope="asset"``, where the asset key is the identity and another fingerprint is a stale
version of the same row group).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal

from dd_core.errors import DDConfigError, ResumeConflictError


class ResumeMode(StrEnum):
    NEVER = "never"
    ALWAYS = "always"
    IF_POSSIBLE = "if_possible"

    @classmethod
    def coerce(cls, value: ResumeMode | str) -> ResumeMode:
        if isinstance(value, cls):
            return value
        text = str(value).strip().lower().replace("-", "_")
        try:
            return cls(text)
        except ValueError:
            valid = ", ".join(m.value for m in cls)
            raise DDConfigError(f"unknown resume mode {value!r}; valid modes: {valid}") from None


class Found(StrEnum):
    NOTHING = "nothing"
    DATASET = "dataset"
    DATA_WITHOUT_METADATA = "data_without_metadata"


@dataclass(frozen=True)
class Checkpoint:
    """A finished row group as a checkpoint source reports it."""

    config_hash: str
    requested_rows: int
    buffer_size: int


@dataclass(frozen=True)
class FoundState:
    kind: Found
    config_hash: str | None = None
    buffer_size: int | None = None
    num_records: int | None = None
    checkpoints: Mapping[int, Checkpoint] = field(default_factory=dict)
    #: The dataset was finished (processors included) by an earlier run.
    finished: bool = False


class Action(StrEnum):
    CREATE = "create"
    RESUME = "resume"
    NEW_FOLDER = "new_folder"
    ALREADY_COMPLETE = "already_complete"


@dataclass(frozen=True)
class ResumePlan:
    action: Action
    #: Requested rows of every row group of the target, by index.
    sizes: Mapping[int, int]
    generate: tuple[int, ...]
    reuse: tuple[int, ...]


def row_group_sizes(num_records: int, buffer_size: int) -> dict[int, int]:
    if num_records < 1 or buffer_size < 1:
        raise DDConfigError(f"num_records and buffer_size must be at least 1 (got {num_records}, {buffer_size})")
    count = -(-num_records // buffer_size)
    return {i: min(buffer_size, num_records - i * buffer_size) for i in range(count)}


def plan_resume(
    mode: ResumeMode | str,
    found: FoundState,
    config_hash: str,
    num_records: int,
    buffer_size: int,
    *,
    location: str,
    scope: Literal["folder", "asset"] = "folder",
    row_groups: Iterable[int] | None = None,
) -> ResumePlan:
    """Decide what to generate and what to reuse, or raise ``ResumeConflictError``.

    ``row_groups`` limits an asset-scope plan to the row groups of one run.
    """
    mode = ResumeMode.coerce(mode)
    sizes = row_group_sizes(num_records, buffer_size)
    if scope == "asset":
        return _plan_asset(mode, found, config_hash, sizes, buffer_size, location, row_groups)
    return _plan_folder(mode, found, config_hash, num_records, sizes, buffer_size, location)


def _plan_folder(mode, found, config_hash, num_records, sizes, buffer_size, location) -> ResumePlan:
    everything = tuple(sizes)
    if found.kind is Found.NOTHING:
        if mode is ResumeMode.ALWAYS:
            raise ResumeConflictError(
                f"Cannot resume {location}: found nothing to resume (the folder is missing or holds no dataset); "
                "expected a dataset from an earlier run. Start one with --resume if_possible or --resume never."
            )
        return ResumePlan(Action.CREATE, sizes, everything, ())
    if mode is ResumeMode.NEVER:
        return ResumePlan(Action.NEW_FOLDER, sizes, everything, ())
    if found.kind is Found.DATA_WITHOUT_METADATA:
        raise ResumeConflictError(
            f"Cannot resume {location}: found row-group files but no metadata.json, so the config that made "
            "them is unknown; expected a dataset written by dd. Use --resume never to start a new folder next "
            "to it, or move the files away."
        )
    if found.config_hash != config_hash:
        raise ResumeConflictError(
            f"Cannot resume {location}: found a dataset made with config {found.config_hash}, expected the "
            f"current config {config_hash}; resuming would mix data from two configs. Restore the original "
            "config, use --resume never to start a new folder next to it, or pick another --dataset-name."
        )
    if found.buffer_size != buffer_size:
        raise ResumeConflictError(
            f"Cannot resume {location}: found row groups of buffer_size {found.buffer_size}, expected "
            f"{buffer_size}; row groups keep their size for the whole dataset. Rerun with --buffer-size "
            f"{found.buffer_size}."
        )
    generated = max((i * buffer_size + cp.requested_rows for i, cp in found.checkpoints.items()), default=0)
    if num_records < generated:
        raise ResumeConflictError(
            f"Cannot resume {location}: found {generated} records already generated, expected at most the "
            f"requested num_records {num_records}; finished data is never deleted. Rerun with --num-records "
            f"{generated} or more, or use --resume never for a new, smaller dataset."
        )
    reuse = tuple(i for i in sizes if _current(found.checkpoints.get(i), config_hash, sizes[i], buffer_size))
    reused = set(reuse)
    generate = tuple(i for i in sizes if i not in reused)
    if not generate and found.finished and found.num_records == num_records:
        return ResumePlan(Action.ALREADY_COMPLETE, sizes, (), reuse)
    return ResumePlan(Action.RESUME, sizes, generate, reuse)


def _plan_asset(mode, found, config_hash, sizes, buffer_size, location, row_groups) -> ResumePlan:
    targets = tuple(sorted(row_groups)) if row_groups is not None else tuple(sizes)
    unknown = [i for i in targets if i not in sizes]
    if unknown:
        raise DDConfigError(f"row groups {unknown} are outside the dataset of {len(sizes)} row groups ({location})")
    if mode is ResumeMode.ALWAYS and found.kind is Found.NOTHING:
        raise ResumeConflictError(
            f"Cannot resume {location}: found no materialized row group, expected at least one from an earlier "
            "run. Launch with resume mode if_possible (the default) or never."
        )
    reuse, generate = [], []
    for i in targets:
        cp = found.checkpoints.get(i)
        if mode is not ResumeMode.NEVER and _current(cp, config_hash, sizes[i], buffer_size):
            reuse.append(i)
            continue
        if mode is ResumeMode.ALWAYS and cp is not None:
            raise StaleRowGroupError(location, i, cp, config_hash, sizes[i], buffer_size)
        generate.append(i)
    return ResumePlan(Action.RESUME if reuse else Action.CREATE, sizes, tuple(generate), tuple(reuse))


def _current(cp: Checkpoint | None, config_hash: str, requested: int, buffer_size: int) -> bool:
    return cp is not None and cp.config_hash == config_hash and cp.requested_rows == requested and cp.buffer_size == buffer_size


class StaleRowGroupError(ResumeConflictError):
    """Under ALWAYS, a row group was made under another fingerprint (or row-group size)."""

    def __init__(self, location: str, row_group: int, cp: Checkpoint, config_hash: str, requested: int, buffer_size: int):
        self.row_group = row_group
        self.stored_hash = cp.config_hash
        self.current_hash = config_hash
        super().__init__(
            f"Cannot resume row group {row_group} of {location}: found it made with config {cp.config_hash} "
            f"({cp.requested_rows} rows, buffer_size {cp.buffer_size}), expected config {config_hash} "
            f"({requested} rows, buffer_size {buffer_size}). Resume mode 'always' never regenerates; launch with "
            "'if_possible' to regenerate stale row groups, or restore the config that made it."
        )
