"""dd's loggers: ``logging.getLogger`` plus the filter that scrubs known secrets from each record.

A logger's filters see only the records that logger makes, so every dd logger carries one:
whatever handlers an application (a notebook, a Dagster run) attaches, no key reaches them.
"""

from __future__ import annotations

import logging

from dd_core.redaction import RedactingFilter


def get_logger(name: str) -> logging.Logger:
    log = logging.getLogger(name)
    if not any(isinstance(f, RedactingFilter) for f in log.filters):
        log.addFilter(RedactingFilter())
    return log
