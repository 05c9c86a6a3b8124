"""A batch-mode model's calls: the response cache first, then its row group's batches.

The counterpart of ``ModelCaller`` for ``batch: true``: no chat-completions request is sent; a
cell's request waits in its row group's ``BatchCollector`` and goes out in a batch. A request
that fails inside a batch (an error line, an expired batch) goes into a later batch, up to the
model's ``max_retries`` times; a non-retryable failure, or one past the budget, fails the cell
(and its row, under the row-failure share rules). Results reach the response cache (under the
keys an online call would use) before their batch is marked collected, by the batch runner.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from dd_core.config.models import ModelConfig
from dd_core.engine.llm.batch_api import BatchAPI
from dd_core.engine.llm.batch_journal import BatchJournal
from dd_core.engine.llm.batch_runner import BatchRunner, BatchSettings
from dd_core.engine.llm.cache import RowGroupCache
from dd_core.engine.llm.client import Completion
from dd_core.engine.llm.usage import ModelUsage

if TYPE_CHECKING:
    from dd_core.engine.llm.batch_collector import BatchCollector


@dataclass
class BatchCaller:
    model: ModelConfig
    client: BatchAPI

    def runner(self, journal: BatchJournal, cache: RowGroupCache, row_group: int) -> BatchRunner:
        """This model's batches for one row group, storing results into its response cache."""
        alias = self.model.alias

        async def store(completions: Mapping[str, Completion]) -> None:
            for key, completion in completions.items():
                if cache.get(key) is None:
                    cache.put(key, completion, alias, batch=True)
            await cache.persist()

        settings = BatchSettings(alias, row_group, self.model.batch_poll_interval_s)
        return BatchRunner(self.client, journal, settings, store)

    async def complete(
        self,
        payload: bytes,
        cache: RowGroupCache,
        collector: BatchCollector,
        column: str,
        depth: int,
        row: int,
        usage: ModelUsage,
    ) -> Completion:
        key = hashlib.sha256(payload).hexdigest()
        cached = cache.get(key)
        if cached is not None:
            usage.cache_hits += 1
            return cached
        for attempt in range(self.model.max_retries + 1):
            outcome = await collector.request(self.model.alias, column, depth, row, key, payload)
            if isinstance(outcome, Completion):
                usage.calls += 1
                usage.batch_calls += 1
                usage.prompt_tokens += outcome.prompt_tokens
                usage.completion_tokens += outcome.completion_tokens
                return outcome
            usage.errors[outcome.code] += 1
            usage.sample_error = usage.sample_error or str(outcome)
            if not outcome.retryable or attempt == self.model.max_retries:
                raise outcome
            usage.retries += 1
        raise AssertionError("unreachable")
