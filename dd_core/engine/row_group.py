"""A row group as a pure function of (config, index): vectorised columns, then the row-wise
stage (LLM columns and what reads them), then the survivors of failed LLM cells, then the post
stage (validators). With an acceptance rule, ``acceptance`` picks the rows from candidates."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

import pyarrow as pa

from dd_core.config import DatasetConfig
from dd_core.config.columns import ExpressionColumn, PersonColumn
from dd_core.config.seed_dataset import SeedDatasetColumn
from dd_core.engine.context import RowGroupContext
from dd_core.engine.expressions import expression
from dd_core.engine.llm.usage import ModelUsage
from dd_core.engine.person import generate_person
from dd_core.engine.post_stage import PostStage
from dd_core.engine.samplers import SAMPLERS
from dd_core.engine.seed_rows import seed_rows
from dd_core.errors import GenerationError
from dd_core.storage.acceptance import row_group_acceptance

if TYPE_CHECKING:
    from dd_core.engine.rowwise import RowwiseOutcome

_SINGLE = {**SAMPLERS, PersonColumn: generate_person, ExpressionColumn: expression}


@dataclass(frozen=True)
class AcceptanceCounts:
    """What a row group's candidates came to (recorded in its file and the dataset's metadata)."""

    candidates: int
    accepted: int
    #: Candidates that lost an LLM cell (never judged).
    failed: int
    #: Candidates the row group could have generated.
    budget: int

    @property
    def rate(self) -> float:
        return self.accepted / self.candidates if self.candidates else 0.0

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))

    @classmethod
    def parse(cls, text: str) -> AcceptanceCounts | None:
        """From a row-group file's record (None without one)."""
        record = row_group_acceptance(text)
        return cls(**record) if record else None


@dataclass
class RowGroupResult:
    table: pa.Table
    requested_rows: int
    usage: dict[str, ModelUsage] = field(default_factory=dict)
    #: What the row group was paid for, per model alias, as its file records it (JSON).
    llm_spend: str = ""
    #: With an acceptance rule: candidates generated, accepted and lost (see ``acceptance``).
    acceptance: AcceptanceCounts | None = None
    #: With ``keep_rejected``: the candidates the rule rejected, for inspection beside the row group.
    rejected: pa.Table | None = None
    #: With ``keep_rejected``: each kept row's position in the candidate stream.
    kept_candidates: list[int] | None = None

    @property
    def dropped_rows(self) -> int:
        return self.requested_rows - self.table.num_rows


def vector_stage(
    config: DatasetConfig, index: int, num_rows: int, buffer_size: int, *, row_offset: int | None = None
) -> RowGroupContext:
    """Every column computed a whole column at a time: samplers, seed rows, expressions that
    read no LLM column. ``row_offset``: where an ordered seed file is read from (default
    ``index * buffer_size``; candidates of an acceptance rule read from their own range)."""
    offset = index * buffer_size if row_offset is None else row_offset
    ctx = RowGroupContext(config.seed, index, num_rows, row_offset=offset, render_limits=config.render_limits)
    for col in config.generation_order:
        if col.name in config.rowwise_names or col.name in config.post_names:
            continue
        if isinstance(col, SeedDatasetColumn):
            ctx.columns.update(seed_rows(col, ctx))
        else:
            ctx.columns[col.name] = _SINGLE[type(col)](col, ctx)
    return ctx


def assemble(config: DatasetConfig, ctx: RowGroupContext, outcome: RowwiseOutcome | None = None) -> RowGroupResult:
    """The row group's table: vectorised columns, plus the row-wise ones and without the rows
    that lost an LLM cell. Raises ``GenerationError`` past ``max_failed_row_share``."""
    num_rows = ctx.num_rows
    if outcome is None:
        columns = dict(ctx.columns)
        PostStage(config).run(columns, num_rows)
        return RowGroupResult(pa.table({name: columns[name] for name in config.generated_names}), num_rows)
    dropped = num_rows - int(outcome.kept.sum())
    if num_rows and dropped / num_rows > config.max_failed_row_share:
        raise GenerationError(failure_report(ctx.index, num_rows, dropped, config.max_failed_row_share, outcome))
    mask = pa.array(outcome.kept)
    columns = {**{n: a.filter(mask) if dropped else a for n, a in ctx.columns.items()}, **outcome.columns}
    PostStage(config).run(columns, num_rows - dropped)
    return RowGroupResult(pa.table({name: columns[name] for name in config.generated_names}), num_rows, outcome.usage)


def failure_report(
    index: int, num_rows: int, dropped: int, share: float, outcome: RowwiseOutcome, what: str = "rows"
) -> str:
    by_model = Counter(f.alias for f in outcome.failures)
    parts = []
    for alias, count in by_model.most_common():
        usage = outcome.usage[alias]
        codes = ", ".join(f"{code} x{n}" for code, n in usage.errors.most_common()) or "none (invalid replies)"
        sample = next((str(f) for f in outcome.failures if f.alias == alias), "")
        parts.append(
            f"model '{alias}' ({usage.model}): {count} failed cell(s); status codes seen: {codes}; sample: {sample}"
        )
    return (
        f"row group {index} failed: {dropped} of {num_rows} {what} lost an LLM cell ({dropped / num_rows:.0%}, more than "
        f"the allowed max_failed_row_share of {share:.0%}); it was not recorded, and its successful calls are cached "
        "for the next attempt. " + " | ".join(parts)
    )
