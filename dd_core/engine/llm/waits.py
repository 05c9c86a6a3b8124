"""How long one cell's call waits before each retry, within its model's limits, and said aloud.

Each wait is the server's ``Retry-After`` when it sent one, else exponential backoff (0.25 s,
0.5 s, 1 s, ... up to 20 s) with full jitter, cut to the model's ``max_retry_wait_s``. The
waits of one cell add up to at most ``retry_wait_budget_s``: a wait that would pass it (or a
``Retry-After`` longer than what is left of it) fails the cell at once instead of sleeping.
Every wait is logged with the model, the status and the seconds, when it is about to be slept
(``plan`` picks a wait, ``commit`` checks the budget, counts it and logs it): a wait planned for
a retry that never happens (the last attempt failed) is neither logged nor counted.
"""

from __future__ import annotations

import random

from dd_core.config.models import ModelConfig
from dd_core.engine.llm.client import CallFailed
from dd_core.log import get_logger

log = get_logger(__name__)

BACKOFF_BASE_S = 0.25
BACKOFF_MAX_S = 20.0


class RetryWaits:
    """The waits of one cell's call (create one per call)."""

    def __init__(self, model: ModelConfig):
        self.model = model
        self.waited = 0.0

    def next_wait(self, failure: CallFailed, retry: int) -> float:
        """Seconds to sleep before retry number ``retry`` (1-based), counted and logged; raises
        ``CallFailed`` when the cell's wait budget cannot cover it."""
        return self.commit(failure, retry, self.plan(failure, retry))

    def plan(self, failure: CallFailed, retry: int) -> float:
        """The wait ``failure`` calls for before retry number ``retry``: its ``Retry-After`` (cut to
        ``max_retry_wait_s``), else jittered backoff. Nothing is counted or logged."""
        if failure.retry_after is not None:
            return min(failure.retry_after, self.model.max_retry_wait_s)
        return random.uniform(0, min(BACKOFF_MAX_S, self.model.max_retry_wait_s, BACKOFF_BASE_S * 2 ** (retry - 1)))

    def commit(self, failure: CallFailed, retry: int, wait: float) -> float:
        """Count ``wait`` against the budget and log it, just before it is slept; raises
        ``CallFailed`` instead when what is left of the budget cannot cover it."""
        budget = self.model.retry_wait_budget_s
        left = budget - self.waited
        if failure.retry_after is not None and failure.retry_after > left:
            raise self._gave_up(
                failure,
                f"the server asked to wait {failure.retry_after:g} s (Retry-After), more than the {left:.1f} s left",
            )
        if wait > left:
            raise self._gave_up(failure, f"the next wait of {wait:.1f} s would pass it ({left:.1f} s left)")
        self.waited += wait
        log.info(
            "model %s (%s): %s; retry %d of %d in %.1f s (%.1f of %g s of this cell's wait budget used)",
            self.model.alias,
            self.model.model,
            failure.code if failure.status is None else f"HTTP {failure.status}",
            retry,
            self.model.max_retries,
            wait,
            self.waited,
            budget,
        )
        return wait

    def _gave_up(self, failure: CallFailed, why: str) -> CallFailed:
        return CallFailed(
            f"{failure}; gave up waiting: {why} of this cell's retry_wait_budget_s of {self.model.retry_wait_budget_s:g} s "
            f"(model '{self.model.alias}')",
            code=failure.code,
            status=failure.status,
            retryable=False,
        )
