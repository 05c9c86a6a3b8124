"""Errors a user can cause. Each carries a message a person can act on and a CLI exit code.

The exit codes (README's table): 0 success, 2 config or usage, 3 resume conflict, 4 damaged
dataset, 5 locked, 6 generation or storage failed, 7 a model's endpoint failed its check before
any work, 70 internal error (a bug in dd), 130 interrupted by Ctrl-C, 143 stopped by SIGTERM.
"""

from __future__ import annotations

from dataclasses import dataclass


class DDError(Exception):
    """Base of every error dd raises on purpose."""

    exit_code = 1


#: Characters of one problem's message, and problems listed in one error (a hostile input's
#: message must not be the size of the input).
MAX_MESSAGE = 1000
MAX_ISSUES = 30


@dataclass(frozen=True)
class ConfigIssue:
    """One problem in a dataset config, located by column and field where possible."""

    message: str
    column: str | None = None
    field: str | None = None

    def __str__(self) -> str:
        message = self.message if len(self.message) <= MAX_MESSAGE else self.message[: MAX_MESSAGE - 3] + "..."
        where = []
        if self.column is not None:
            where.append(f"column '{self.column}'")
        if self.field is not None:
            where.append(f"field '{self.field}'")
        return f"{', '.join(where)}: {message}" if where else message


#: Exit code of an unexpected exception (a bug in dd): EX_SOFTWARE of sysexits.h.
INTERNAL_ERROR_EXIT = 70


class DDConfigError(DDError):
    """The dataset config (or a command-line argument) is invalid."""

    exit_code = 2

    def __init__(self, issues: list[ConfigIssue] | str, source: str | None = None):
        if isinstance(issues, str):
            issues = [ConfigIssue(issues)]
        self.issues = issues
        self.source = source
        head = f"Invalid dataset config{f' {source}' if source else ''}"
        if len(issues) == 1:
            text = f"{head}: {issues[0]}"
        else:
            lines = [f"  - {issue}" for issue in issues[:MAX_ISSUES]]
            if len(issues) > MAX_ISSUES:
                lines.append(f"  ... and {len(issues) - MAX_ISSUES} more")
            text = head + ":\n" + "\n".join(lines)
        super().__init__(text)

    @property
    def column(self) -> str | None:
        return self.issues[0].column if self.issues else None

    @property
    def field(self) -> str | None:
        return self.issues[0].field if self.issues else None


class DDUsageError(DDConfigError):
    """An argument or path is unusable (a target, a name, a folder that is not a dataset): exit 2.

    A ``DDConfigError`` for whoever catches those, with a plain message (no "Invalid dataset
    config" heading: the config is fine)."""

    def __init__(self, message: str):
        self.issues = [ConfigIssue(message)]
        self.source = None
        Exception.__init__(self, message)


class ResumeConflictError(DDError):
    """What is on disk (or in Dagster) cannot be resumed with the requested run."""

    exit_code = 3


class DatasetDamagedError(DDError):
    """Finished data on disk is unreadable or disagrees with its metadata; nothing was changed."""

    exit_code = 4


class DatasetLockedError(DDError):
    """Another process is writing this dataset folder."""

    exit_code = 5


class GenerationError(DDError):
    """A row group could not be generated (e.g. too many failed LLM calls); it was not recorded."""

    exit_code = 6


class ModelEndpointError(DDError):
    """A model's server could not be reached, or refused its key or model, when checked before
    any work (``dd_core.engine.llm.probe``); nothing was written."""

    exit_code = 7


class StorageError(GenerationError):
    """Writing failed (disk full, read-only, permissions); nothing half-written was left behind."""
