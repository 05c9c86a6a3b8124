"""The row-wise stage: LLM columns and the expressions that read them, one coroutine per row.

A row's cells run in dependency order and a cell starts as soon as its own inputs exist
(row 3's answer does not wait for row 900's question). Requests to one model share that
model's adaptive limit, whichever column and row group they come from (see ``pipeline``). A
cell that still fails after retries drops its row. Cells of a batch-mode model wait in their row
group's ``BatchCollector`` and go out as batches (see ``llm.batch_collector``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from dd_core.config import DatasetConfig
from dd_core.config.columns import ExpressionColumn
from dd_core.config.llm_columns import LLMColumn
from dd_core.config.render_limits import RenderLimits
from dd_core.engine.context import RowGroupContext
from dd_core.engine.expressions import compile_renderer, convert_value, expression_type
from dd_core.engine.llm.batch_caller import BatchCaller
from dd_core.engine.llm.batch_collector import BatchCollector
from dd_core.engine.llm.batch_journal import BatchJournal
from dd_core.engine.llm.cache import RowGroupCache
from dd_core.engine.llm.caller import ModelCaller
from dd_core.engine.llm.cells import InvalidReply, arrow_type, instructions, parse_reply, reply_is_value
from dd_core.engine.llm.client import CallFailed
from dd_core.engine.llm.providers import provider_for
from dd_core.engine.llm.usage import ModelUsage
from dd_core.storage.filesystems import StoragePath


class CellFailed(Exception):
    def __init__(self, alias: str, message: str):
        super().__init__(message)
        self.alias = alias


@dataclass
class RowwiseOutcome:
    columns: dict[str, pa.Array]
    #: Which rows of the row group survived (False: a cell failed and the row was dropped).
    kept: np.ndarray
    usage: dict[str, ModelUsage]
    failures: list[CellFailed] = field(default_factory=list)


def cell_seed(seed: int, row_group: int, row: int, column: str, attempt: int) -> int:
    """The per-cell seed sent to the endpoint: same cell, same seed, in any run."""
    digest = hashlib.sha256(f"{seed}/{row_group}/{row}/{column}/{attempt}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


@dataclass
class RowGroupCells:
    """One row group's share of the row-wise stage: its inputs, cache, results and usage."""

    ctx: RowGroupContext
    base: dict[str, list]
    cache: RowGroupCache
    usage: dict[str, ModelUsage]
    rows: list[dict[str, Any] | None]
    failures: list[CellFailed] = field(default_factory=list)
    #: The row group's batches, when a model of the stage is in batch mode.
    batches: BatchCollector | None = None
    journal: BatchJournal | None = None

    async def start(self) -> None:
        """Take up the batches earlier runs submitted for this row group (before any row starts)."""
        if self.batches is not None:
            await self.batches.start()

    async def aclose(self) -> None:
        """Stop waiting for batches (they stay journaled), then sync and close the cache."""
        try:
            if self.batches is not None:
                await self.batches.close()
        finally:
            if self.journal is not None:
                self.journal.close()
            await self.cache.aclose()


class _Cell:
    """What one LLM column sends, prepared once: renderers, its provider's request template, and
    how its reply is read."""

    def __init__(self, col: LLMColumn, caller: ModelCaller | BatchCaller, limits: RenderLimits):
        self.col = col
        self.caller = caller
        self.batch = isinstance(caller, BatchCaller)
        self.prompt = compile_renderer(col.prompt, col.name, "prompt", limits)
        self.system = (
            compile_renderer(col.system_prompt, col.name, "system_prompt", limits) if col.system_prompt else None
        )
        self.instructions = instructions(col, caller.model.structured_output)
        self.request = provider_for(caller.model).template(caller.model, col)
        self.verbatim = reply_is_value(col)

    def messages(self, context: dict) -> Any:
        """The row's messages, encoded for the request."""
        system = self.system(context) if self.system else None
        if self.instructions:
            system = f"{system}\n\n{self.instructions}" if system else self.instructions
        return self.request.prompt(system or None, self.prompt(context))


class RowwiseStage:
    """The row-wise columns of a config, run row by row against shared model callers."""

    def __init__(self, config: DatasetConfig, callers: dict[str, ModelCaller | BatchCaller]):
        self.config = config
        self.columns = [c for c in config.generation_order if c.name in config.rowwise_names]
        reads = {r for c in self.columns for refs in c.dependencies().values() for r in refs}
        # Names, not their producers: a seed dataset column produces several names.
        self.base_names = sorted(r for r in reads if config.producers[r].name not in config.rowwise_names)
        self.aliases = sorted({c.model for c in self.columns if isinstance(c, LLMColumn)})
        limits = config.render_limits
        self.cells = {c.name: _Cell(c, callers[c.model], limits) for c in self.columns if isinstance(c, LLMColumn)}
        self.expressions = {
            c.name: compile_renderer(c.expr, c.name, "expr", limits)
            for c in self.columns
            if isinstance(c, ExpressionColumn)
        }
        self.batch_callers = {a: c for a, c in callers.items() if isinstance(c, BatchCaller) and a in self.aliases}
        #: Per column, in order: (name, its LLM cell or None, its expression's renderer or None, column).
        self.steps = [(c.name, self.cells.get(c.name), self.expressions.get(c.name), c) for c in self.columns]

    def cells_of(
        self, ctx: RowGroupContext, cache: RowGroupCache, journal_path: StoragePath | None = None
    ) -> RowGroupCells:
        """One row group's cells; with batch-mode models, its journal (read here) and collector."""
        base = {name: ctx.python_values(name) for name in self.base_names}
        usage = {a: ModelUsage(self.config.model(a).model, self.config.model(a).provider) for a in self.aliases}
        cells = RowGroupCells(ctx, base, cache, usage, [None] * ctx.num_rows)
        if self.batch_callers:
            cells.journal = BatchJournal.open(journal_path)
            runners = {a: caller.runner(cells.journal, cache, ctx.index) for a, caller in self.batch_callers.items()}
            cells.batches = BatchCollector(runners, ctx.num_rows)
        return cells

    def outcome(self, group: RowGroupCells) -> RowwiseOutcome:
        rows = group.rows
        kept = np.fromiter((row is not None for row in rows), dtype=bool, count=len(rows))
        return RowwiseOutcome(self.arrays([row for row in rows if row is not None]), kept, group.usage, group.failures)

    def arrays(self, rows: list[dict[str, Any]]) -> dict[str, pa.Array]:
        """The row-wise columns of finished rows, typed."""
        return {col.name: pa.array([row[col.name] for row in rows], self._type(col)) for col in self.columns}

    def extend(self, group: RowGroupCells, ctx: RowGroupContext) -> None:
        """Give a row group more rows (an acceptance rule's next candidates): ``ctx`` holds the
        vectorised columns of all of them, the first ones as before."""
        group.ctx = ctx
        group.base = {name: ctx.python_values(name) for name in self.base_names}
        group.rows.extend([None] * (ctx.num_rows - len(group.rows)))

    @staticmethod
    def _type(col: LLMColumn | ExpressionColumn) -> pa.DataType:
        return expression_type(col) if isinstance(col, ExpressionColumn) else arrow_type(col)

    async def row(self, group: RowGroupCells, row: int) -> None:
        """Produce one row into ``group.rows[row]`` (left None when a cell failed)."""
        try:
            context = {name: values[row] for name, values in group.base.items()}
            produced = {}
            for depth, (name, cell, expression, col) in enumerate(self.steps):
                if cell is None:
                    value = convert_value(expression(context), col, row)
                else:
                    try:
                        value = await self._cell(cell, context, group, row, depth)
                    except CellFailed as failure:
                        group.failures.append(failure)
                        group.usage[col.model].failed_cells += 1
                        return
                context[name] = produced[name] = value
            group.rows[row] = produced
        finally:
            if group.batches is not None:
                group.batches.row_finished()

    async def _cell(self, cell: _Cell, context: dict, group: RowGroupCells, row: int, depth: int) -> Any:
        col, caller = cell.col, cell.caller
        usage = group.usage[col.model]
        messages = cell.messages(context)
        batches = group.batches if cell.batch else None
        problem = None
        for attempt in range(col.max_invalid_retries + 1):
            payload = cell.request.payload(
                messages, cell_seed(self.config.seed, group.ctx.index, row, col.name, attempt)
            )
            try:
                if batches is not None:
                    completion = await caller.complete(payload, group.cache, batches, col.name, depth, row, usage)
                else:
                    completion = await caller.complete(payload, group.cache, (group.ctx.index, -depth, row), usage)
            except CallFailed as exc:
                raise CellFailed(col.model, f"column '{col.name}', row {row}: {exc}") from exc
            if cell.verbatim:
                return completion.content
            try:
                return parse_reply(col, completion.content)
            except InvalidReply as exc:
                usage.invalid_replies += 1
                problem = exc
                if completion.cut:  # the reply ran out of tokens: its shape is not the model's fault
                    usage.cut_replies += 1
                    problem = InvalidReply(
                        f"cut at max_tokens ({completion.completion_tokens:,} tokens): raise max_tokens of model "
                        f"'{col.model}' ({exc})"
                    )
        raise CellFailed(
            col.model, f"column '{col.name}', row {row}: {col.max_invalid_retries + 1} invalid replies; last: {problem}"
        )
