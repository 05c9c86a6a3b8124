"""Column configs of sampler, expression and seed-dataset columns.

Each model validates its own parameters; relations between columns (references, cycles,
parent values) are checked by ``dd_core.config.dataset``.
"""

from __future__ import annotations

import datetime as dt
import re
from fractions import Fraction
from functools import cached_property
from typing import Any, Literal

import numpy as np
from pydantic import Field, field_validator, model_validator

from dd_core.config.base import ConfigModel, FieldProblem
from dd_core.config.templates import check_safe, referenced_names

Scalar = bool | int | float | str
COLUMN_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
#: Decimal places a float can meaningfully be rounded to.
MAX_DECIMALS = 15
Decimals = Field(default=None, ge=0, le=MAX_DECIMALS)


class ColumnConfig(ConfigModel):
    name: str
    description: str | None = None

    @field_validator("name")
    @classmethod
    def _identifier(cls, value: str) -> str:
        if not COLUMN_NAME.match(value):
            raise ValueError(
                f"'{value}' is not a valid column name: use letters, digits and '_', "
                "starting with a letter or '_' (templates refer to columns by name)"
            )
        return value

    def dependencies(self) -> dict[str, set[str]]:
        """Columns this one reads, keyed by the field that names them."""
        return {}

    def templates(self) -> dict[str, str]:
        """Jinja templates of this column, keyed by field."""
        return {}

    def output_names(self) -> list[str]:
        return [self.name]


def _same_type(values: list[Scalar], what: str) -> list[Scalar]:
    huge = [v for v in values if type(v) is int and not INT64_MIN <= v <= INT64_MAX]
    if huge:
        raise ValueError(f"{what} must fit in 64-bit integers; {str(huge[0])[:30]} does not")
    kinds = {type(v) for v in values}
    if kinds <= {int, float} and float in kinds:
        return [float(v) for v in values]
    if len(kinds) > 1:
        names = ", ".join(sorted(k.__name__ for k in kinds))
        raise ValueError(f"{what} mix types ({names}); use one type for all of them")
    return values


def normalised_weights(weights: list[float], count: int) -> list[Fraction]:
    """Weights as exact fractions summing to 1, so [0.4, 0.6] and [2, 3] are the same config.

    Parsed from the shortest decimal text of each float: no float drift across reloads.
    """
    if len(weights) != count:
        raise ValueError(f"needs one weight per value ({count} values, {len(weights)} weights)")
    exact = [Fraction(repr(float(w))) for w in weights]  # finite: the model refuses NaN and infinity
    if any(w < 0 for w in exact):
        raise ValueError("weights must not be negative")
    total = sum(exact)
    if total == 0:
        raise ValueError("weights must not all be zero")
    return [w / total for w in exact]


class CategoryColumn(ColumnConfig):
    type: Literal["category"]
    values: list[Scalar] = Field(min_length=1)
    weights: list[float] | None = None

    @field_validator("values")
    @classmethod
    def _values(cls, values: list[Scalar]) -> list[Scalar]:
        return _same_type(values, "values")

    @model_validator(mode="after")
    def _weights(self) -> CategoryColumn:
        if self.weights is not None:
            try:
                normalised_weights(self.weights, len(self.values))
            except ValueError as exc:
                raise FieldProblem("weights", str(exc)) from exc
        return self

    @cached_property
    def probabilities(self) -> np.ndarray | None:
        if self.weights is None:
            return None
        return np.array([float(w) for w in normalised_weights(self.weights, len(self.values))])

    def fingerprint_view(self) -> dict[str, Any]:
        view = super().fingerprint_view()
        if self.weights is not None:
            view["weights"] = [str(w) for w in normalised_weights(self.weights, len(self.values))]
        return view


class SubcategoryColumn(ColumnConfig):
    """Values drawn uniformly from the list mapped to the row's parent value."""

    type: Literal["subcategory"]
    parent: str
    values: dict[str, list[Scalar]]

    @field_validator("values", mode="before")
    @classmethod
    def _string_keys(cls, values: Any) -> Any:
        if isinstance(values, dict):
            return {str(k): v for k, v in values.items()}
        return values

    @field_validator("values")
    @classmethod
    def _non_empty(cls, values: dict[str, list[Scalar]]) -> dict[str, list[Scalar]]:
        if not values:
            raise ValueError("map at least one parent value to a list of values")
        empty = [k for k, v in values.items() if not v]
        if empty:
            raise ValueError(f"parent value(s) {empty} map to an empty list")
        flat = _same_type([v for vs in values.values() for v in vs], "values")
        it = iter(flat)
        return {k: [next(it) for _ in vs] for k, vs in values.items()}

    def dependencies(self) -> dict[str, set[str]]:
        return {"parent": {self.parent}}


class UniformColumn(ColumnConfig):
    type: Literal["uniform"]
    low: float
    high: float
    dtype: Literal["float", "int"] = "float"
    decimals: int | None = Decimals

    @model_validator(mode="after")
    def _bounds(self) -> UniformColumn:
        if self.dtype == "int" and not (self.low.is_integer() and self.high.is_integer()):
            raise FieldProblem("low", f"dtype int needs whole-number bounds, got low={self.low}, high={self.high}")
        if self.dtype == "int" and not (INT64_MIN <= self.low and self.high < 2**63):
            raise FieldProblem(
                "high", f"dtype int needs bounds that fit in 64-bit integers, got low={self.low:g}, high={self.high:g}"
            )
        if self.dtype == "int" and self.low > self.high or self.dtype == "float" and self.low >= self.high:
            raise FieldProblem("high", f"low ({self.low}) must be below high ({self.high})")
        if self.dtype == "float" and not np.isfinite(self.high - self.low):
            raise FieldProblem("high", f"high - low must be a finite float, got low={self.low:g}, high={self.high:g}")
        return self


class GaussianColumn(ColumnConfig):
    type: Literal["gaussian"]
    mean: float
    std: float = Field(ge=0)
    decimals: int | None = Decimals
    clip: tuple[float, float] | None = None

    @field_validator("clip")
    @classmethod
    def _clip(cls, clip: tuple[float, float] | None) -> tuple[float, float] | None:
        if clip is not None and clip[0] >= clip[1]:
            raise ValueError(f"clip must be [low, high] with low < high, got {list(clip)}")
        return clip


class BernoulliColumn(ColumnConfig):
    type: Literal["bernoulli"]
    p: float = Field(ge=0, le=1)


class BinomialColumn(ColumnConfig):
    type: Literal["binomial"]
    n: int = Field(ge=0, le=INT64_MAX)
    p: float = Field(ge=0, le=1)


class PoissonColumn(ColumnConfig):
    type: Literal["poisson"]
    #: numpy draws Poisson values up to about 9.2e18; beyond that the mean has no 64-bit draws.
    mean: float = Field(ge=0, le=1e18)


_UNITS = {
    "d": "D",
    "day": "D",
    "days": "D",
    "h": "h",
    "hour": "h",
    "hours": "h",
    "m": "m",
    "min": "m",
    "minute": "m",
    "minutes": "m",
    "s": "s",
    "sec": "s",
    "second": "s",
    "seconds": "s",
}
TimeUnit = Literal["D", "h", "m", "s"]
_DIRECTIVE = re.compile(r"%[-_0^#]?\d*[EO]?[aAbBcCdDeFgGhHIjklmMnpPrRsStTuUVwWxXyYzZ%+]")


class _FormattedTime(ColumnConfig):
    unit: TimeUnit = "D"
    format: str | None = None

    @field_validator("unit", mode="before")
    @classmethod
    def _unit_alias(cls, value: Any) -> Any:
        if isinstance(value, str) and value != "D":
            return _UNITS.get(value.lower(), value)
        return value

    @field_validator("format")
    @classmethod
    def _format(cls, fmt: str | None) -> str | None:
        if fmt is not None:
            # glibc's strftime prints most mistakes verbatim instead of failing: check directives here.
            rest = _DIRECTIVE.sub("", fmt)
            if "%" in rest:
                bad = rest[rest.index("%") :][:3]
                raise ValueError(
                    f"invalid strftime format {fmt!r}: {bad!r} is not a directive (write %% for a literal %)"
                )
            dt.datetime(2000, 1, 2, 3, 4, 5).strftime(fmt)
        return fmt


class DatetimeColumn(_FormattedTime):
    type: Literal["datetime"]
    start: dt.datetime
    end: dt.datetime

    @model_validator(mode="after")
    def _range(self) -> DatetimeColumn:
        if (self.start.tzinfo is None) != (self.end.tzinfo is None):
            raise FieldProblem(
                "end", f"start ({self.start}) and end ({self.end}) must both have a time zone or neither"
            )
        if self.start.utcoffset() != self.end.utcoffset():
            raise FieldProblem(
                "end",
                f"start ({self.start}) and end ({self.end}) must use the same UTC offset (values are drawn in wall-clock time)",
            )
        if self.start >= self.end:
            raise FieldProblem("end", f"start ({self.start}) must be before end ({self.end})")
        return self


class TimedeltaColumn(_FormattedTime):
    """A datetime offset from another datetime column by a random whole number of units."""

    type: Literal["timedelta"]
    reference: str
    dt_min: int
    dt_max: int

    @model_validator(mode="after")
    def _range(self) -> TimedeltaColumn:
        if self.dt_min > self.dt_max:
            raise FieldProblem("dt_max", f"dt_min ({self.dt_min}) must not exceed dt_max ({self.dt_max})")
        return self

    def dependencies(self) -> dict[str, set[str]]:
        return {"reference": {self.reference}}


class UUIDColumn(ColumnConfig):
    type: Literal["uuid"]
    prefix: str = ""
    short_form: bool = False
    uppercase: bool = False


def _faker_has_locale(locale: str) -> bool:
    """Whether a Faker provider ships data for ``locale`` (a folder per locale and provider),
    looked up without importing Faker."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("faker")
    if spec is None or not spec.origin or not locale.replace("_", "").isalnum():
        return False
    providers = Path(spec.origin).parent / "providers"
    return any((providers / name / locale / "__init__.py").is_file() for name in ("person", "address", "internet"))


class PersonColumn(ColumnConfig):
    """A struct of a fictitious person drawn from Faker's locale vocabularies."""

    type: Literal["person"]
    locale: str = "en_US"
    age_range: tuple[int, int] = (18, 114)
    sex: Literal["Male", "Female"] | None = None

    @field_validator("locale")
    @classmethod
    def _locale(cls, locale: str) -> str:
        if _faker_has_locale(locale):
            return locale
        from faker.config import AVAILABLE_LOCALES  # ~45 ms to import: only to explain a refusal

        if locale not in AVAILABLE_LOCALES:
            close = [loc for loc in AVAILABLE_LOCALES if loc.split("_")[0] == locale.split("_")[0]]
            hint = f" (did you mean one of {close}?)" if close else ""
            raise ValueError(f"Faker has no locale '{locale}'{hint}")
        return locale

    @field_validator("age_range")
    @classmethod
    def _ages(cls, ages: tuple[int, int]) -> tuple[int, int]:
        if not 0 <= ages[0] <= ages[1] <= 150:
            raise ValueError(f"age_range must be [min, max] with 0 <= min <= max <= 150, got {list(ages)}")
        return ages


class ScipyColumn(ColumnConfig):
    """Any ``scipy.stats`` distribution, by name and parameters."""

    type: Literal["scipy"]
    distribution: str
    params: dict[str, float] = Field(default_factory=dict)
    decimals: int | None = Decimals

    @model_validator(mode="after")
    def _frozen_distribution(self) -> ScipyColumn:
        try:
            self.frozen()
        except ValueError as exc:
            raise FieldProblem("params" if "parameters" in str(exc) else "distribution", str(exc)) from exc
        return self

    def frozen(self) -> Any:
        from scipy import stats

        dist = getattr(stats, self.distribution, None)
        if not isinstance(dist, (stats.rv_continuous, stats.rv_discrete)):
            raise ValueError(f"scipy.stats has no distribution named '{self.distribution}'")
        try:
            frozen = dist(**self.params)
            frozen.rvs(size=1, random_state=np.random.default_rng(0))
        except (TypeError, ValueError, ArithmeticError) as exc:
            raise ValueError(f"parameters {self.params} do not fit scipy.stats.{self.distribution}: {exc}") from exc
        return frozen


class ExpressionColumn(ColumnConfig):
    """A Jinja template over other columns, rendered per row in a sandbox."""

    type: Literal["expression"]
    expr: str
    dtype: Literal["str", "int", "float", "bool"] = "str"

    @field_validator("expr")
    @classmethod
    def _template(cls, expr: str) -> str:
        check_safe(expr)  # a TemplateProblem is a ValueError: pydantic reports it on this field
        return expr

    def dependencies(self) -> dict[str, set[str]]:
        return {"expr": referenced_names(self.expr)}

    def templates(self) -> dict[str, str]:
        return {"expr": self.expr}
