"""The row-wise stage: LLM columns and the expressions that read them, one coroutine per row.

A row's cells run in dependency order and a cell starts as soon as its own inputs exist
(row 3's answer does not wait for row 900's question). Requests to one model share that
model's adaptive limit, whichever column they come from. A cell that still fails after
retries drops its row.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import gc
import hashlib
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import numpy as np
import pyarrow as pa

from dd_core.config import DatasetConfig
from dd_core.config.columns import ExpressionColumn
from dd_core.config.llm_columns import LLMColumn
from dd_core.config.render_limits import RenderLimits
from dd_core.engine.context import RowGroupContext
from dd_core.engine.expressions import convert_value, expression_type, render_rows
from dd_core.engine.llm.cache import RowGroupCache, cache_path
from dd_core.engine.llm.caller import ModelCaller
from dd_core.engine.llm.cells import InvalidReply, arrow_type, instructions, parse_reply, response_format
from dd_core.engine.llm.client import CallFailed, ChatClient
from dd_core.engine.llm.limiter import AdaptiveLimiter
from dd_core.engine.llm.runtime import LLMRuntime
from dd_core.engine.llm.usage import ModelUsage


#: Rows in progress per request slot of the row group's models (see ``_RowGroupStage.run``).
ROWS_PER_SLOT = 4


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


def run_rowwise(config: DatasetConfig, ctx: RowGroupContext, runtime: LLMRuntime) -> RowwiseOutcome:
    # Objects alive now (the row group's columns, libraries) are not garbage: freezing them keeps
    # the collector's full passes short, which keeps the event loop's response times flat.
    gc.freeze()
    try:
        return _run_sync(_RowGroupStage(config, ctx, runtime).run())
    finally:
        gc.unfreeze()


def _run_sync(coroutine: Coroutine) -> Any:
    """``asyncio.run``, also from code that already runs an event loop (e.g. a notebook)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


class _RowGroupStage:
    def __init__(self, config: DatasetConfig, ctx: RowGroupContext, runtime: LLMRuntime):
        self.config = config
        self.ctx = ctx
        self.runtime = runtime
        self.columns = [c for c in config.generation_order if c.name in config.rowwise_names]
        reads = {config.producers[r].name for c in self.columns for refs in c.dependencies().values() for r in refs}
        self.base = {name: ctx.python_values(name) for name in sorted(reads - config.rowwise_names)}
        self.aliases = sorted({c.model for c in self.columns if isinstance(c, LLMColumn)})
        self.usage = {a: ModelUsage(config.model(a).model) for a in self.aliases}
        self.failures: list[CellFailed] = []

    async def run(self) -> RowwiseOutcome:
        cache = RowGroupCache(cache_path(self.runtime.cache_dir, self.ctx.index))
        # No cookie jar: an API client has no cookies, and the jar costs time on every request.
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), cookie_jar=aiohttp.DummyCookieJar()) as session:
            self.callers = {a: self._caller(a, session) for a in self.aliases}
            # Rows start a window at a time: enough to keep every request slot busy, few enough
            # that rendering the first prompts of the whole row group does not stall the loop.
            window = asyncio.Semaphore(ROWS_PER_SLOT * max(1, sum(c.limiter.max_limit for c in self.callers.values())))
            tasks = [asyncio.ensure_future(self._windowed_row(window, r, cache)) for r in range(self.ctx.num_rows)]
            try:
                rows = await asyncio.gather(*tasks)
            finally:
                for task in tasks:  # on an error, stop every row before the cache closes
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                cache.close()
                for alias, caller in self.callers.items():
                    self.runtime.limits[alias] = caller.limiter.limit
        kept = np.array([row is not None for row in rows], dtype=bool)
        survivors = [row for row in rows if row is not None]
        columns = {
            col.name: pa.array([row[col.name] for row in survivors], self._type(col))
            for col in self.columns
        }
        return RowwiseOutcome(columns, kept, self.usage, self.failures)

    def _caller(self, alias: str, session: aiohttp.ClientSession) -> ModelCaller:
        model = self.config.model(alias)
        endpoint = self.runtime.endpoint(model)
        limiter = AdaptiveLimiter(endpoint.max_parallel_requests)
        limiter.limit = min(self.runtime.limits.get(alias, limiter.limit), limiter.limit)
        client = ChatClient(session, endpoint.base_url, endpoint.api_key, endpoint.timeout_s)
        return ModelCaller(model, client, limiter, self.usage[alias])

    @staticmethod
    def _type(col) -> pa.DataType:
        return expression_type(col) if isinstance(col, ExpressionColumn) else arrow_type(col)

    async def _windowed_row(self, window: asyncio.Semaphore, row: int, cache: RowGroupCache) -> dict[str, Any] | None:
        async with window:
            return await self._row(row, cache)

    async def _row(self, row: int, cache: RowGroupCache) -> dict[str, Any] | None:
        context = {name: values[row] for name, values in self.base.items()}
        produced = {}
        for depth, col in enumerate(self.columns):
            if isinstance(col, ExpressionColumn):
                value = convert_value(_render(col.expr, col.name, "expr", context, self.ctx.render_limits), col, row)
            else:
                try:
                    value = await self._cell(col, context, row, (-depth, row), cache)
                except CellFailed as failure:
                    self.failures.append(failure)
                    self.usage[col.model].failed_cells += 1
                    return None
            context[col.name] = produced[col.name] = value
        return produced

    async def _cell(self, col: LLMColumn, context: dict, row: int, priority: tuple, cache: RowGroupCache) -> Any:
        caller = self.callers[col.model]
        messages = _messages(col, context, self.ctx.render_limits)
        problem = None
        for attempt in range(col.max_invalid_retries + 1):
            body = {
                "model": caller.model.model,
                "messages": messages,
                **caller.model.sampling_params(),
                "seed": cell_seed(self.config.seed, self.ctx.index, row, col.name, attempt),
            }
            fmt = response_format(col)
            if fmt is not None:
                body["response_format"] = fmt
            try:
                completion = await caller.complete(body, cache, priority)
            except CallFailed as exc:
                raise CellFailed(col.model, f"column '{col.name}', row {row}: {exc}") from exc
            try:
                return parse_reply(col, completion.content)
            except InvalidReply as exc:
                caller.usage.invalid_replies += 1
                problem = exc
        raise CellFailed(col.model, f"column '{col.name}', row {row}: {col.max_invalid_retries + 1} invalid replies; last: {problem}")


def _render(source: str, column: str, field: str, context: dict, limits: RenderLimits) -> str:
    return render_rows(source, column, field, [context], limits)[0]


def _messages(col: LLMColumn, context: dict, limits: RenderLimits) -> list[dict[str, str]]:
    system = _render(col.system_prompt, col.name, "system_prompt", context, limits) if col.system_prompt else None
    extra = instructions(col)
    if extra:
        system = f"{system}\n\n{extra}" if system else extra
    messages = [{"role": "system", "content": system}] if system else []
    messages.append({"role": "user", "content": _render(col.prompt, col.name, "prompt", context, limits)})
    return messages
