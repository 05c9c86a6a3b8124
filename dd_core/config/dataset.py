"""The dataset config: columns, processors, seed; relations between columns and their order."""

from __future__ import annotations

import datetime as dt
from functools import cached_property
from typing import Annotated

from pydantic import Field, field_validator, model_validator

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
from dd_core.config.rule import UNKNOWN, check_rule, parse_rule, rule_names, shape_problems
from dd_core.config.seed_dataset import SeedDatasetColumn
from dd_core.config.shapes import column_shape
from dd_core.config.templates import TemplateProblem, check_limits, check_nodes
from dd_core.config.validation_columns import ValidationColumn
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
    | LLMCodeColumn
    | ValidationColumn,
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
    #: A Jinja boolean expression over a row: each row group then holds exactly its share of rows
    #: that pass it, drawn from a seeded stream of candidates (see ``dd_core.engine.acceptance``).
    accept: str | None = None
    #: Candidates a row group may generate per row it needs before it fails (its budget).
    max_candidates_per_record: float = Field(default=3.0, ge=1, le=100)
    #: Write rejected candidates beside each row group (never into the dataset) for inspection.
    keep_rejected: bool = False

    fingerprint_exclude = frozenset(
        {"name", "description", "models", "max_failed_row_share", "render_limits", "keep_rejected"}
    )

    @field_validator("accept")
    @classmethod
    def _rule(cls, accept: str | None) -> str | None:
        if accept is not None:
            if not accept.strip():
                raise ValueError("is empty; write a condition such as 'review.score >= 2', or leave 'accept' out")
            check_nodes(parse_rule(accept))  # a TemplateProblem is a ValueError: reported on this field
        return accept

    def fingerprint_view(self) -> dict:
        """LLM columns carry their model's output-affecting settings instead of its alias:
        renaming an alias or moving an endpoint changes nothing, and unused models do not count.
        Without a rule, its budget is left out (configs without one keep their fingerprint)."""
        view = super().fingerprint_view()
        if self.accept is None:
            del view["accept"], view["max_candidates_per_record"]
        for col, col_view in zip(self.columns, view["columns"]):
            if isinstance(col, LLMColumn):
                col_view["model"] = self.model(col.model).fingerprint_view()
                if not isinstance(col, LLMStructuredColumn | LLMJudgeColumn):
                    col_view["model"].pop("structured_output", None)  # asks for no JSON: the mode changes nothing
        return view

    def resolved_dump(self) -> dict:
        """The config as JSON data that loads back to this config from any folder: what a
        dataset folder's config.json holds (seed and tokenizer file paths made absolute)."""
        data = self.model_dump(mode="json")
        for col, col_data in zip(self.columns, data["columns"]):
            if isinstance(col, SeedDatasetColumn):
                col_data["path"] = str(col.resolved_path)
            elif isinstance(col, ValidationColumn) and col.tokenizer_file is not None:
                col_data["tokenizer"] = col.tokenizer_file[0]
        if self.accept is None:
            for name in ("accept", "max_candidates_per_record", "keep_rejected"):
                del data[name]
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
    def post_names(self) -> set[str]:
        """Columns made after the row-wise stage, a batch of rows at a time: validation columns
        and everything that reads them (see ``dd_core.engine.post_stage``)."""
        post: set[str] = set()
        for col in self.generation_order:
            if isinstance(col, ValidationColumn) or self._reads(col) & post:
                post.add(col.name)
        return post

    @cached_property
    def rowwise_names(self) -> set[str]:
        """Columns made row by row: LLM columns and everything that reads them (but not what
        also reads a validation column)."""
        rowwise: set[str] = set()
        for col in self.generation_order:
            if (isinstance(col, LLM_COLUMN_TYPES) or self._reads(col) & rowwise) and col.name not in self.post_names:
                rowwise.add(col.name)
        return rowwise

    def _reads(self, col: ColumnConfig) -> set[str]:
        """Columns (by producer name) that ``col`` reads."""
        return {self.producers[r].name for refs in col.dependencies().values() for r in refs}

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
        issues += _rowwise_issues(config) + _post_issues(config) + _time_range_issues(config)
    issues += _processor_issues(config)
    issues += _template_issues(config)
    issues += _acceptance_issues(config, producers)
    return issues


def _post_issues(config: DatasetConfig) -> list[ConfigIssue]:
    """Validators run once a row's LLM cells are done: only expressions may read them."""
    issues = []
    for col in config.columns:
        if col.name in config.post_names and not isinstance(col, (ExpressionColumn, ValidationColumn)):
            issues.append(
                ConfigIssue(
                    f"a {col.type} column cannot read a validation column (validators run after a row's LLM "
                    "columns); read the validated columns themselves, or use an expression column",
                    col.name,
                    "dependencies",
                )
            )
    return issues


def _acceptance_issues(config: DatasetConfig, producers: dict[str, ColumnConfig]) -> list[ConfigIssue]:
    """The rule reads known columns and fields, gives true or false, and fits the render limits."""
    if config.accept is None:
        return []
    unknown = sorted(rule_names(config.accept) - set(producers))
    if unknown:
        known = ", ".join(producers)
        return [ConfigIssue(f"the rule reads unknown column(s) {unknown} (known columns: {known})", None, "accept")]
    issues = [
        ConfigIssue(problem, None, "accept")
        for problem in shape_problems(
            config.accept, lambda name: column_shape(producers[name], name) if name in producers else UNKNOWN
        )
    ]
    try:
        check_rule(config.accept, config.render_limits)
    except TemplateProblem as exc:
        issues.append(ConfigIssue(str(exc), None, "accept"))
    batched = sorted({m.alias for m in config.models if m.batch})
    if batched:
        issues.append(
            ConfigIssue(
                f"an 'accept' rule cannot be used with batch-mode models yet ({', '.join(batched)}): candidates "
                "are generated in waves that wait for each other; set batch: false",
                None,
                "accept",
            )
        )
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
