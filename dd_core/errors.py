"""Errors a user can cause. Each carries a message a person can act on and a CLI exit code."""

from __future__ import annotations

from dataclasses import dataclass


class DDError(Exception):
    """Base of every error dd raises on purpose."""

    exit_code = 1


@dataclass(frozen=True)
class ConfigIssue:
    """One problem in a dataset config, located by column and field where possible."""

    message: str
    column: str | None = None
    field: str | None = None

    def __str__(self) -> str:
        where = []
        if self.column is not None:
            where.append(f"column '{self.column}'")
        if self.field is not None:
            where.append(f"field '{self.field}'")
        return f"{', '.join(where)}: {self.message}" if where else self.message


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
            text = head + ":\n" + "\n".join(f"  - {issue}" for issue in issues)
        super().__init__(text)

    @property
    def column(self) -> str | None:
        return self.issues[0].column if self.issues else None

    @property
    def field(self) -> str | None:
        return self.issues[0].field if self.issues else None


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
