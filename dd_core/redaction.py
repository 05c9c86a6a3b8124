"""Secrets never reach a file, a log line or the terminal.

One registry knows every secret value dd was given (API keys read from ``api_key_env`` and keys
passed as overrides). ``scrub`` replaces each, and its JSON-escaped and URL-encoded forms, with
``***`` in any text before dd stores it (metadata.json, the LLM cache), logs it (a filter on
dd's loggers) or prints it (the CLI). Values shorter than ``MIN_LENGTH`` are not treated as
secrets: replacing every "ab" in a message would hide the message, not a key.
"""

from __future__ import annotations

import json
import logging
import threading
from urllib.parse import quote

MARKER = "***"
MIN_LENGTH = 4

_forms: tuple[str, ...] = ()
_lock = threading.Lock()


def register(secret: str | None) -> None:
    """Remember a secret value for the rest of the process."""
    global _forms
    if not secret or len(secret) < MIN_LENGTH:
        return
    variants = {secret, json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1], quote(secret, safe="")}
    with _lock:
        # Longest first, so a form containing another is replaced whole.
        _forms = tuple(sorted(set(_forms) | variants, key=len, reverse=True))


def scrub(text: str) -> str:
    """``text`` with every known secret replaced by ``***``."""
    for form in _forms:
        if form in text:
            text = text.replace(form, MARKER)
    return text


def contains_secret(text: str) -> bool:
    return any(form in text for form in _forms)


class RedactingFilter(logging.Filter):
    """Scrubs a record's message (and its traceback text) before any handler formats it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not _forms:
            return True
        message = record.getMessage()
        clean = scrub(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = scrub(logging.Formatter().formatException(record.exc_info))
        return True


def redact_handler(handler: logging.Handler) -> None:
    """Scrub every record a handler emits, whichever library logged it (used by the CLI)."""
    if not any(isinstance(f, RedactingFilter) for f in handler.filters):
        handler.addFilter(RedactingFilter())
