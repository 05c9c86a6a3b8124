"""Batch progress in the run's Dagster log: dd logs each batch's state ("row group 3: batch ...
in_progress, 1,200 of 5,000 done") on the ``dd.batch`` logger; while a run generates, those lines
also go to ``context.log``, so the run's page shows a batch that stays in progress."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg

BATCH_LOGGER = "dd.batch"


class _ToDagster(logging.Handler):
    def __init__(self, log: dg.DagsterLogManager):
        super().__init__(logging.INFO)
        self._log = log

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._log.info(record.getMessage())
        except Exception:  # a log line must never stop generation
            self.handleError(record)


@contextmanager
def batch_progress_to(log: dg.DagsterLogManager) -> Iterator[None]:
    logger = logging.getLogger(BATCH_LOGGER)
    handler = _ToDagster(log)
    level = logger.level
    logger.addHandler(handler)
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
