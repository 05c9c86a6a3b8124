"""Resume decisions: one pure function from (mode, what was found, current run) to a plan.

Two checkpoint sources feed it: a dataset folder (``scope="folder"``, where the folder name is
the identity and another fingerprint may be unrelated data) and Dagster's materializations
(``scope="asset"``, where the asset key is the identity and another fingerprint is a stale
version of the same row group).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal

from dd_core.errors import DDUsageError, ResumeConflictError
from dd_core.index_ranges import IndexRanges, RangeMap

#: Rows one row group may have: it is generated in memory as a whole.
MAX_BUFFER_SIZE = 1_000_000
#: Row groups one dataset may have (one file each).
MAX_ROW_GROUPS = 10_000_000


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
            raise DDUsageError(f"unknown resume mode {value!r}; valid modes: {valid}") from None


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


class RangeCheckpoints(RangeMap[Checkpoint]):
    """A folder's checkpoints without one object per row group: the row groups in ``indices``
    are ``regular`` (same config, full size), except those listed in ``irregular``."""


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
    #: Requested rows of every row group of the target, by index (computed, not stored).
    sizes: RowGroupSizes
    #: Row groups to make and to keep, in index order (ranges: iterate them lazily).
    generate: IndexRanges
    reuse: IndexRanges


class RowGroupSizes(Mapping[int, int]):
    """Requested rows of each row group of a target, by index: ``buffer_size`` for all but
    a shorter last one. Arithmetic, so a target of 10,000,000 row groups costs nothing."""

    def __init__(self, num_records: int, buffer_size: int):
        self.num_records = num_records
        self.buffer_size = buffer_size
        self.count = -(-num_records // buffer_size)

    def __getitem__(self, index: int) -> int:
        if not (isinstance(index, int) and 0 <= index < self.count):
            raise KeyError(index)
        return min(self.buffer_size, self.num_records - index * self.buffer_size)

    def __contains__(self, index: object) -> bool:
        return isinstance(index, int) and 0 <= index < self.count

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.count))

    def __len__(self) -> int:
        return self.count

    def __eq__(self, other: object) -> bool:
        if isinstance(other, RowGroupSizes):
            return (self.num_records, self.buffer_size) == (other.num_records, other.buffer_size)
        return Mapping.__eq__(self, other)

    def __repr__(self) -> str:
        return f"RowGroupSizes(num_records={self.num_records}, buffer_size={self.buffer_size})"


def _whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def row_group_sizes(num_records: int, buffer_size: int) -> RowGroupSizes:
    """The row groups of a target, after checking it is one dd can make."""
    if not (_whole(num_records) and _whole(buffer_size)) or num_records < 1 or buffer_size < 1:
        raise DDUsageError(
            f"num_records and buffer_size must be whole numbers of at least 1 (got {num_records!r}, {buffer_size!r})"
        )
    if buffer_size > MAX_BUFFER_SIZE:
        raise DDUsageError(
            f"buffer_size {buffer_size:,} is more than the {MAX_BUFFER_SIZE:,} rows a row group may have "
            "(a row group is generated in memory); use a smaller --buffer-size"
        )
    sizes = RowGroupSizes(num_records, buffer_size)
    if sizes.count > MAX_ROW_GROUPS:
        raise DDUsageError(
            f"num_records {num_records:,} with buffer_size {buffer_size:,} makes {sizes.count:,} row groups, more than "
            f"the {MAX_ROW_GROUPS:,} a dataset may have; raise --buffer-size or lower --num-records"
        )
    return sizes


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


def _plan_folder(
    mode: ResumeMode,
    found: FoundState,
    config_hash: str,
    num_records: int,
    sizes: RowGroupSizes,
    buffer_size: int,
    location: str,
) -> ResumePlan:
    everything = IndexRanges.span(0, len(sizes))
    if found.kind is Found.NOTHING:
        if mode is ResumeMode.ALWAYS:
            raise ResumeConflictError(
                f"Cannot resume {location}: found nothing to resume (the folder is missing or holds no dataset); "
                "expected a dataset from an earlier run. Start one with --resume if_possible or --resume never."
            )
        return ResumePlan(Action.CREATE, sizes, everything, IndexRanges())
    if mode is ResumeMode.NEVER:
        return ResumePlan(Action.NEW_FOLDER, sizes, everything, IndexRanges())
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
    done, odd = _indices(found.checkpoints)
    last = done.last()
    generated = 0 if last is None else last * buffer_size + found.checkpoints[last].requested_rows
    if num_records < generated:
        raise ResumeConflictError(
            f"Cannot resume {location}: found {generated} records already generated, expected at most the "
            f"requested num_records {num_records}; finished data is never deleted. Rerun with --num-records "
            f"{generated} or more, or use --resume never for a new, smaller dataset."
        )
    # Only the odd checkpoints and the (maybe shorter) last row group can differ from the run.
    candidates = {*odd, len(sizes) - 1}
    stale = IndexRanges.of(
        i
        for i in candidates
        if i in done and not _current(found.checkpoints.get(i), config_hash, sizes.get(i), buffer_size)
    )
    reuse = done.intersection(everything).difference(stale)
    generate = everything.difference(reuse)
    if not generate and found.finished and found.num_records == num_records:
        return ResumePlan(Action.ALREADY_COMPLETE, sizes, (), reuse)
    return ResumePlan(Action.RESUME, sizes, generate, reuse)


def _plan_asset(
    mode: ResumeMode,
    found: FoundState,
    config_hash: str,
    sizes: RowGroupSizes,
    buffer_size: int,
    location: str,
    row_groups: Iterable[int] | None,
) -> ResumePlan:
    targets = tuple(sorted(row_groups)) if row_groups is not None else tuple(sizes)
    unknown = [i for i in targets if i not in sizes]
    if unknown:
        raise DDUsageError(f"row groups {unknown} are outside the dataset of {len(sizes)} row groups ({location})")
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
    return ResumePlan(Action.RESUME if reuse else Action.CREATE, sizes, IndexRanges.of(generate), IndexRanges.of(reuse))


def _indices(checkpoints: Mapping[int, Checkpoint]) -> tuple[IndexRanges, Iterable[int]]:
    """(every index with a checkpoint, the indices whose checkpoint may differ from the folder's)."""
    if isinstance(checkpoints, RangeCheckpoints):
        return checkpoints.indices, checkpoints.irregular
    return IndexRanges.of(checkpoints), list(checkpoints)


def _current(cp: Checkpoint | None, config_hash: str, requested: int, buffer_size: int) -> bool:
    return (
        cp is not None
        and cp.config_hash == config_hash
        and cp.requested_rows == requested
        and cp.buffer_size == buffer_size
    )


class StaleRowGroupError(ResumeConflictError):
    """Under ALWAYS, a row group was made under another fingerprint (or row-group size)."""

    def __init__(
        self, location: str, row_group: int, cp: Checkpoint, config_hash: str, requested: int, buffer_size: int
    ):
        self.row_group = row_group
        self.stored_hash = cp.config_hash
        self.current_hash = config_hash
        super().__init__(
            f"Cannot resume row group {row_group} of {location}: found it made with config {cp.config_hash} "
            f"({cp.requested_rows} rows, buffer_size {cp.buffer_size}), expected config {config_hash} "
            f"({requested} rows, buffer_size {buffer_size}). Resume mode 'always' never regenerates; launch with "
            "'if_possible' to regenerate stale row groups, or restore the config that made it."
        )
