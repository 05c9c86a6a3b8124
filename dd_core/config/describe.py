"""One line per output column saying how it is made, for catalogs and UIs (e.g. Dagster's
column schema): the sampler and its key parameters, the expression, the seed file, or the
LLM column type and its model."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from dd_core.config.columns import (
    BernoulliColumn,
    BinomialColumn,
    CategoryColumn,
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
from dd_core.config.dataset import DatasetConfig
from dd_core.config.llm_columns import LLMCodeColumn, LLMColumn, LLMJudgeColumn, LLMStructuredColumn
from dd_core.config.seed_dataset import SeedDatasetColumn
from dd_core.config.validation_columns import ValidationColumn

#: Longest template or value list quoted in full; longer ones are cut with an ellipsis.
MAX_QUOTED = 160
MAX_VALUES = 8


def describe_generator(config: DatasetConfig, output_name: str) -> str:
    """How the generated column ``output_name`` is made, e.g. ``uniform int in [0, 100]``."""
    col = config.producers[output_name]
    if isinstance(col, SeedDatasetColumn):
        how = "shuffled" + (", with replacement" if col.replace else "") if col.order == "shuffled" else "in file order"
        return f"seed_dataset: column {output_name!r} of {Path(col.path).name} ({how})"
    if isinstance(col, LLMColumn):
        return _llm(config, col)
    if isinstance(col, ValidationColumn):
        return _validation(col)
    return _SAMPLERS[type(col)](col)


def _validation(col: ValidationColumn) -> str:
    lint = f", ruff {','.join(col.lint)}" if col.lint else ""
    detail = {
        "python": f"parses as Python{lint}",
        "sql": f"parses as {col.dialect} SQL (sqlglot)",
        "json_schema": "matches a JSON Schema",
        "regex": f"{'matches' if col.full_match else 'contains'} /{_cut(col.pattern or '', 40)}/",
        "length": f"{col.unit} in [{col.min if col.min is not None else 0}, {col.max if col.max is not None else '∞'}]"
        + (f" ({Path(col.tokenizer).name})" if col.tokenizer else ""),
        "callable": f"{col.function} (own process)",
    }[col.validator]
    return f"validation {col.validator}: {', '.join(col.target_columns)} {detail}"


def _num(value: float) -> str:
    return f"{value:g}"


def _cut(text: str, limit: int = MAX_QUOTED) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _values(values: list, probabilities: list[float] | None = None) -> str:
    shown = [
        str(v) if probabilities is None else f"{v} ({p:.0%})"
        for v, p in zip(values, probabilities if probabilities is not None else values)
    ]
    more = f", … ({len(values)} values)" if len(shown) > MAX_VALUES else ""
    return ", ".join(shown[:MAX_VALUES]) + more


def _decimals(decimals: int | None) -> str:
    return "" if decimals is None else f", rounded to {decimals} decimal{'s' * (decimals != 1)}"


def _category(col: CategoryColumn) -> str:
    return f"category: {_values(col.values, col.probabilities)}"


def _subcategory(col: SubcategoryColumn) -> str:
    count = sum(len(v) for v in col.values.values())
    return f"subcategory of {col.parent!r}: {count} values over {len(col.values)} parent values"


def _uniform(col: UniformColumn) -> str:
    if col.dtype == "int":
        return f"uniform int in [{_num(col.low)}, {_num(col.high)}]"
    decimals = _decimals(col.decimals)
    return f"uniform float in [{_num(col.low)}, {_num(col.high)}){decimals}"


def _gaussian(col: GaussianColumn) -> str:
    clip = f", clipped to [{_num(col.clip[0])}, {_num(col.clip[1])}]" if col.clip else ""
    decimals = _decimals(col.decimals)
    return f"gaussian: mean {_num(col.mean)}, std {_num(col.std)}{clip}{decimals}"


_UNIT_NAMES = {"D": "days", "h": "hours", "m": "minutes", "s": "seconds"}


def _time_format(col: DatetimeColumn | TimedeltaColumn) -> str:
    return f", formatted {col.format!r}" if col.format else ""


def _moment(value: dt.datetime) -> str:
    return (
        value.date().isoformat()
        if (value.hour, value.minute, value.second, value.microsecond) == (0, 0, 0, 0)
        else value.isoformat()
    )


def _datetime(col: DatetimeColumn) -> str:
    return f"datetime between {_moment(col.start)} and {_moment(col.end)} (whole {_UNIT_NAMES[col.unit]}){_time_format(col)}"


def _timedelta(col: TimedeltaColumn) -> str:
    return f"timedelta: {col.reference!r} plus {col.dt_min}..{col.dt_max} {_UNIT_NAMES[col.unit]}{_time_format(col)}"


def _uuid(col: UUIDColumn) -> str:
    options = (
        [f"prefix {col.prefix!r}"] * bool(col.prefix) + ["short form"] * col.short_form + ["uppercase"] * col.uppercase
    )
    return "uuid4" + (f" ({', '.join(options)})" if options else "")


def _person(col: PersonColumn) -> str:
    sex = f", {col.sex.lower()}" if col.sex else ""
    return f"person (Faker {col.locale}, ages {col.age_range[0]}-{col.age_range[1]}{sex}): first_name, last_name, sex, age, email, city, state"


def _scipy(col: ScipyColumn) -> str:
    params = ", ".join(f"{k}={_num(v)}" for k, v in col.params.items())
    return f"scipy.stats.{col.distribution}({params}){_decimals(col.decimals)}"


def _expression(col: ExpressionColumn) -> str:
    return f"expression ({col.dtype}): {_cut(col.expr)}"


_SAMPLERS = {
    CategoryColumn: _category,
    SubcategoryColumn: _subcategory,
    UniformColumn: _uniform,
    GaussianColumn: _gaussian,
    BernoulliColumn: lambda col: f"bernoulli: p={_num(col.p)}",
    BinomialColumn: lambda col: f"binomial: n={col.n}, p={_num(col.p)}",
    PoissonColumn: lambda col: f"poisson: mean {_num(col.mean)}",
    DatetimeColumn: _datetime,
    TimedeltaColumn: _timedelta,
    UUIDColumn: _uuid,
    PersonColumn: _person,
    ScipyColumn: _scipy,
    ExpressionColumn: _expression,
}


def _llm(config: DatasetConfig, col: LLMColumn) -> str:
    detail = ""
    if isinstance(col, LLMStructuredColumn):
        detail = f", fields {', '.join(col.output_schema.get('properties', {}))}"
    elif isinstance(col, LLMJudgeColumn):
        detail = f", scores {', '.join(s.name for s in col.scores)}"
    elif isinstance(col, LLMCodeColumn):
        detail = f", {col.language}"
    return f"{col.type} by model {col.model!r} ({config.model(col.model).model}){detail}; prompt: {_cut(col.prompt)}"
