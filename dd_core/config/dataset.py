"""The dataset config: columns, processors, seed; relations between columns and their order."""

from __future__ import annotations

import datetime as dt
from functools import cached_property
from typing import Annotated

from pydantic import Field, model_validator

from dd_core.config.base import ConfigModel
from dd_core.config.columns import (
    BernoulliColumn,
    BinomialColumn,
    CategoryColumn,
    ColumnConfig,
    DatetimeColumn,
    ExpressionColumn,
    GaussianColumn,
    PersonColumn,
    PoissonColumn,
    ScipyColumn,
    SubcategoryColumn,
    TimedeltaColumn,
    UniformColumn,
    UUIDColumn,
)
from dd_core.config.llm_columns import (
    LLM_COLUMN_TYPES,
    LLMCodeColumn,
    LLMColumn,
    LLMJudgeColumn,
    LLMStructuredColumn,
    LLMTextColumn,
)
from dd_core.config.models import ModelConfig
from dd_core.config.processors import DropColumnsProcessor, RenameColumnsProcessor
from dd_core.config.render_limits import RenderLimits
from dd_core.config.seed_dataset import SeedDatasetColumn
from dd_core.config.templates import TemplateProblem, check_limits
from dd_core.errors import ConfigIssue, DDConfigError

DEFAULT_SEED = 42

Column = Annotated[
    CategoryColumn
    | SubcategoryColumn
    | UniformColumn
    | GaussianColumn
    | BernoulliColumn
    | BinomialColumn
    | PoissonColumn
    | DatetimeColumn
    | TimedeltaColumn
    | UUIDColumn
    | PersonColumn
    | ScipyColumn
    | ExpressionColumn
    | SeedDatasetColumn
    | LLMTextColumn
    | LLMStructuredColumn
    | LLMJudgeColumn
    | LLMCodeColumn,
    Field(discriminator="type"),
]
Processor = Annotated[DropColumnsProcessor | RenameColumnsProcessor, Field(discriminator="type")]


class DatasetConfig(ConfigModel):
    """A whole dataset config. The seed is fixed by default so two runs agree."""

    name: str | None = None
    description: str | None = None
    seed: int = Field(default=DEFAULT_SEED, ge=0, le=2**63 - 1)
    columns: list[Column] = Field(min_length=1)
    processors: list[Processor] = Field(default_factory=list)
    models: list[ModelConfig] = Field(default_factory=list)
    #: A row group fails (and is not recorded) when more than this share of its rows fail.
    max_failed_row_share: float = Field(default=0.1, ge=0, le=1)
    #: Per-cell time and output limits of every template (expressions and prompts).
    render_limits: RenderLimits = Field(default_factory=RenderLimits)

    fingerprint_exclude = frozenset({"name", "description", "models", "max_failed_row_share", "render_limits"})

    def fingerprint_view(self) -> dict:
        """LLM columns carry their model's output-affecting settings instead of its alias:
        renaming an alias or moving an endpoint changes nothing, and unused models do not count."""
        view = super().fingerprint_view()
        for col, col_view in zip(self.columns, view["columns"]):
            if isinstance(col, LLMColumn):
                col_view["model"] = self.model(col.model).fingerprint_view()
        return view

    def resolved_dump(self) -> dict:
        """The config as JSON data that loads back to this config from any folder: what a
        dataset folder's config.json holds (seed file paths made absolute)."""
        data = self.model_dump(mode="json")
        for col, col_data in zip(self.columns, data["columns"]):
            if isinstance(col, SeedDatasetColumn):
                col_data["path"] = str(col.resolved_path)
        return data

    def model(self, alias: str) -> ModelConfig:
        return next(m for m in self.models if m.alias == alias)

    @cached_property
    def llm_models(self) -> list[ModelConfig]:
        """The models an LLM column uses, by alias."""
        return [self.model(alias) for alias in sorted({c.model for c in self.columns if isinstance(c, LLMColumn)})]

    @model_validator(mode="after")
    def _relations(self) -> DatasetConfig:
        issues = _relation_issues(self)
        if issues:
            raise DDConfigError(issues)
        return self

    @cached_property
    def producers(self) -> dict[str, ColumnConfig]:
        """Output column name -> the column config that produces it."""
        return {out: col for col in self.columns for out in col.output_names()}

    @cached_property
    def generation_order(self) -> list[ColumnConfig]:
        """Columns in dependency order, config order kept where dependencies allow."""
        order, _ = _topological(self.columns, self.producers)
        return order

    @cached_property
    def generated_names(self) -> list[str]:
        """Column names of a generated row group, in config order (before processors)."""
        return [out for col in self.columns for out in col.output_names()]

    @cached_property
    def rowwise_names(self) -> set[str]:
        """Columns made row by row: LLM columns and everything that reads them."""
        rowwise: set[str] = set()
        for col in self.generation_order:
            reads = {self.producers[r].name for refs in col.dependencies().values() for r in refs}
            if isinstance(col, LLM_COLUMN_TYPES) or reads & rowwise:
                rowwise.add(col.name)
        return rowwise

    @cached_property
    def output_names(self) -> list[str]:
        names = self.generated_names
        for processor in self.processors:
            names = processor.apply_to_names(names)
        return names


def _relation_issues(config: DatasetConfig) -> list[ConfigIssue]:
    issues: list[ConfigIssue] = []
    producers: dict[str, ColumnConfig] = {}
    for col in config.columns:
        for out in col.output_names():
            if out in producers:
                issues.append(
                    ConfigIssue(f"name '{out}' is already used by column '{producers[out].name}'", col.name, "name")
                )
            producers[out] = col
    known = ", ".join(producers)
    for col in config.columns:
        for field, names in col.dependencies().items():
            for ref in sorted(names - set(producers)):
                issues.append(
                    ConfigIssue(f"refers to unknown column '{ref}' (known columns: {known})", col.name, field)
                )
    if issues:
        return issues
    issues += _parent_issues(config.columns, producers)
    issues += _model_issues(config)
    _, cycle = _topological(config.columns, producers)
    if cycle:
        path = " -> ".join(cycle)
        issues.append(ConfigIssue(f"columns depend on each other in a cycle: {path}", cycle[0], "dependencies"))
    else:
        issues += _rowwise_issues(config) + _time_range_issues(config)
    issues += _processor_issues(config)
    issues += _template_issues(config)
    return issues


def _template_issues(config: DatasetConfig) -> list[ConfigIssue]:
    """Render limits that constant expressions already break (``{{ 'a' * 10**9 }}``)."""
    issues = []
    for col in config.columns:
        for field, source in col.templates().items():
            try:
                check_limits(source, config.render_limits)
            except TemplateProblem as exc:
                issues.append(ConfigIssue(str(exc), col.name, field))
    return issues


def _model_issues(config: DatasetConfig) -> list[ConfigIssue]:
    issues = []
    aliases = [m.alias for m in config.models]
    for alias in sorted({a for a in aliases if aliases.count(a) > 1}):
        issues.append(ConfigIssue(f"model alias '{alias}' is defined more than once", None, "models"))
    for col in config.columns:
        if isinstance(col, LLMColumn) and col.model not in aliases:
            known = ", ".join(aliases) or "none defined"
            issues.append(
                ConfigIssue(
                    f"unknown model alias '{col.model}' (models: {known}); add it under 'models:'", col.name, "model"
                )
            )
    return issues


def _rowwise_issues(config: DatasetConfig) -> list[ConfigIssue]:
    """Samplers are drawn for the whole row group before any LLM call: they cannot read LLM output."""
    issues = []
    rowwise = config.rowwise_names
    for col in config.columns:
        if col.name in rowwise and not isinstance(col, (ExpressionColumn, *LLM_COLUMN_TYPES)):
            issues.append(
                ConfigIssue(
                    f"a {col.type} column cannot depend on LLM-written columns; use an expression column",
                    col.name,
                    "dependencies",
                )
            )
    return issues


def _parent_issues(columns: list[ColumnConfig], producers: dict[str, ColumnConfig]) -> list[ConfigIssue]:
    issues = []
    for col in columns:
        if isinstance(col, SubcategoryColumn):
            parent = producers[col.parent]
            if isinstance(parent, CategoryColumn):
                missing = [str(v) for v in parent.values if str(v) not in col.values]
                if missing:
                    issues.append(
                        ConfigIssue(f"no values for parent value(s) {missing} of '{col.parent}'", col.name, "values")
                    )
        if isinstance(col, TimedeltaColumn):
            ref = producers[col.reference]
            if not isinstance(ref, (DatetimeColumn, TimedeltaColumn)):
                issues.append(
                    ConfigIssue(
                        f"reference '{col.reference}' must be a datetime or timedelta column, not {ref.type}",
                        col.name,
                        "reference",
                    )
                )
    return issues


def _time_range_issues(config: DatasetConfig) -> list[ConfigIssue]:
    """Offsets that move dates past what a datetime holds (run once references are known to be acyclic)."""
    issues = []
    for col in config.columns:
        if isinstance(col, TimedeltaColumn) and isinstance(
            config.producers[col.reference], (DatetimeColumn, TimedeltaColumn)
        ):
            if _time_bounds(col, config.producers) is None:
                issues.append(
                    ConfigIssue(
                        f"dt_min/dt_max ({col.dt_min}, {col.dt_max} {col.unit}) move dates of '{col.reference}' outside the years 1-9999",
                        col.name,
                        "dt_max",
                    )
                )
    return issues


_UNIT_SECONDS = {"D": 86_400, "h": 3_600, "m": 60, "s": 1}


def _time_bounds(col: ColumnConfig, producers: dict[str, ColumnConfig]) -> tuple[dt.datetime, dt.datetime] | None:
    """Earliest and latest value of a datetime/timedelta column (wall time), or None past year 9999."""
    if isinstance(col, DatetimeColumn):
        return col.start.replace(tzinfo=None), col.end.replace(tzinfo=None)
    if isinstance(col, TimedeltaColumn) and isinstance(producers.get(col.reference), (DatetimeColumn, TimedeltaColumn)):
        bounds = _time_bounds(producers[col.reference], producers)
        if bounds is None:
            return None
        step = _UNIT_SECONDS[col.unit]
        try:
            return bounds[0] + dt.timedelta(seconds=col.dt_min * step), bounds[1] + dt.timedelta(
                seconds=col.dt_max * step
            )
        except OverflowError:
            return None
    return None


def _processor_issues(config: DatasetConfig) -> list[ConfigIssue]:
    issues = []
    names = [out for col in config.columns for out in col.output_names()]
    for i, processor in enumerate(config.processors):
        where = f"processors[{i}] ({processor.type})"
        missing = [c for c in processor.columns if c not in names]
        if missing:
            issues.append(
                ConfigIssue(
                    f"{where} names unknown column(s) {missing}; columns at that point: {names}", None, "columns"
                )
            )
            continue
        names = processor.apply_to_names(names)
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            issues.append(ConfigIssue(f"{where} leaves duplicate column name(s) {duplicates}", None, "columns"))
    if not names:
        issues.append(ConfigIssue("processors drop every column; keep at least one", None, "processors"))
    return issues


def _topological(
    columns: list[ColumnConfig], producers: dict[str, ColumnConfig]
) -> tuple[list[ColumnConfig], list[str]]:
    """Kahn's algorithm in config order. Returns (order, cycle); cycle is empty when acyclic."""
    needs = {
        col.name: {producers[ref].name for refs in col.dependencies().values() for ref in refs if ref in producers}
        for col in columns
    }
    by_name = {col.name: col for col in columns}
    done: list[ColumnConfig] = []
    placed: set[str] = set()
    progress = True
    while progress:
        progress = False
        for col in columns:
            if col.name not in placed and needs[col.name] <= placed:
                done.append(col)
                placed.add(col.name)
                progress = True
    if len(done) == len(columns):
        return done, []
    return done, _find_cycle({n: needs[n] - placed for n in by_name if n not in placed})


def _find_cycle(needs: dict[str, set[str]]) -> list[str]:
    start = next(iter(needs))
    path = [start]
    while True:
        nxt = sorted(needs[path[-1]])[0]
        if nxt in path:
            return path[path.index(nxt) :] + [nxt]
        path.append(nxt)
