"""Vectorised sampler columns: one numpy draw per column per row group."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import numpy as np
import pyarrow as pa

from dd_core.config.columns import (
    BernoulliColumn,
    BinomialColumn,
    CategoryColumn,
    DatetimeColumn,
    GaussianColumn,
    PoissonColumn,
    ScipyColumn,
    SubcategoryColumn,
    TimedeltaColumn,
    UniformColumn,
    UUIDColumn,
)
from dd_core.engine.arrays import take, values_array
from dd_core.engine.context import RowGroupContext
from dd_core.errors import ConfigIssue, DDConfigError


def _rounded(values: np.ndarray, decimals: int | None) -> np.ndarray:
    return values if decimals is None else np.round(values, decimals)


def category(col: CategoryColumn, ctx: RowGroupContext) -> pa.Array:
    picks = ctx.rng(col.name).choice(len(col.values), size=ctx.num_rows, p=col.probabilities)
    return take(values_array(col.values), picks, pa.array(col.values).type)


def subcategory(col: SubcategoryColumn, ctx: RowGroupContext) -> pa.Array:
    parents = ctx.python_values(col.parent)
    draws = ctx.rng(col.name).random(ctx.num_rows)
    options = {}
    for value in set(parents):
        key = str(value)
        if key not in col.values:
            raise DDConfigError(
                [ConfigIssue(f"no values for parent value {key!r} of '{col.parent}'", col.name, "values")]
            )
        options[value] = col.values[key]
    return pa.array([options[p][int(u * len(options[p]))] for p, u in zip(parents, draws.tolist())])


def uniform(col: UniformColumn, ctx: RowGroupContext) -> pa.Array:
    rng = ctx.rng(col.name)
    if col.dtype == "int":
        return pa.array(rng.integers(int(col.low), int(col.high), size=ctx.num_rows, endpoint=True), pa.int64())
    return pa.array(_rounded(rng.uniform(col.low, col.high, ctx.num_rows), col.decimals))


def gaussian(col: GaussianColumn, ctx: RowGroupContext) -> pa.Array:
    values = ctx.rng(col.name).normal(col.mean, col.std, ctx.num_rows)
    if col.clip is not None:
        values = np.clip(values, *col.clip)
    return pa.array(_rounded(values, col.decimals))


def bernoulli(col: BernoulliColumn, ctx: RowGroupContext) -> pa.Array:
    return pa.array(ctx.rng(col.name).random(ctx.num_rows) < col.p)


def binomial(col: BinomialColumn, ctx: RowGroupContext) -> pa.Array:
    return pa.array(ctx.rng(col.name).binomial(col.n, col.p, ctx.num_rows), pa.int64())


def poisson(col: PoissonColumn, ctx: RowGroupContext) -> pa.Array:
    return pa.array(ctx.rng(col.name).poisson(col.mean, ctx.num_rows), pa.int64())


def scipy_distribution(col: ScipyColumn, ctx: RowGroupContext) -> pa.Array:
    values = np.asarray(col.frozen().rvs(size=ctx.num_rows, random_state=ctx.rng(col.name)))
    return pa.array(_rounded(values, col.decimals) if values.dtype.kind == "f" else values)


def _timestamps(col: DatetimeColumn | TimedeltaColumn, ctx: RowGroupContext, stamps: np.ndarray) -> pa.Array:
    ctx.timestamps[col.name] = stamps
    if col.format is None:
        return pa.array(stamps)
    # Python's strftime is the documented format language; format each distinct value once.
    unique, inverse = np.unique(stamps, return_inverse=True)
    return take(formatted(unique, col.format), inverse, pa.string())


#: strftime formats numpy writes the same (ISO 8601), with the unit numpy formats them at.
_ISO_FORMATS = {"%Y-%m-%d": ("D", None), "%Y-%m-%dT%H:%M:%S": ("s", None), "%Y-%m-%d %H:%M:%S": ("s", " ")}
_FOUR_DIGIT_YEARS = (np.datetime64("1000-01-01", "s"), np.datetime64("9999-12-31T23:59:59", "s"))


def formatted(stamps: np.ndarray, format: str) -> np.ndarray:
    """``datetime.strftime(format)`` of each datetime64[s] as an object array. The ISO formats
    are written by numpy at once (~5x faster); strftime writes years below 1000 unpadded (and
    refuses years past 9999), so those take the strftime path."""
    iso = _ISO_FORMATS.get(format)
    if iso is not None and (
        not len(stamps) or _FOUR_DIGIT_YEARS[0] <= stamps.min() and stamps.max() <= _FOUR_DIGIT_YEARS[1]
    ):
        unit, separator = iso
        texts = np.datetime_as_string(stamps, unit=unit).astype(object)
        return np.char.replace(texts.astype(str), "T", separator).astype(object) if separator else texts
    return values_array([d.strftime(format) for d in stamps.astype("datetime64[s]").astype(dt.datetime)])


def datetime_(col: DatetimeColumn, ctx: RowGroupContext) -> pa.Array:
    unit = col.unit
    start = np.datetime64(col.start.replace(tzinfo=None), unit)
    span = int((np.datetime64(col.end.replace(tzinfo=None), unit) - start).astype(int))
    offsets = ctx.rng(col.name).integers(0, max(span, 1), size=ctx.num_rows)
    return _timestamps(col, ctx, (start + offsets.astype(f"timedelta64[{unit}]")).astype("datetime64[s]"))


def timedelta(col: TimedeltaColumn, ctx: RowGroupContext) -> pa.Array:
    deltas = ctx.rng(col.name).integers(col.dt_min, col.dt_max, size=ctx.num_rows, endpoint=True)
    stamps = ctx.timestamps[col.reference] + deltas.astype(f"timedelta64[{col.unit}]")
    return _timestamps(col, ctx, stamps.astype("datetime64[s]"))


def uuid4(col: UUIDColumn, ctx: RowGroupContext) -> pa.Array:
    """Random (version 4) UUIDs from the row group's stream: reproducible, linear in rows."""
    raw = (
        ctx.rng(col.name).bit_generator.random_raw(2 * ctx.num_rows).astype("<u8").view(np.uint8).reshape(-1, 16).copy()
    )
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80
    text = raw.tobytes().hex()
    if col.uppercase:
        text = text.upper()
    prefix = col.prefix or ""
    if col.short_form:
        ids = [prefix + text[i : i + 8] for i in range(0, len(text), 32)]
    else:
        ids = [
            f"{prefix}{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
            for h in (text[i : i + 32] for i in range(0, len(text), 32))
        ]
    return pa.array(ids, pa.string())


SAMPLERS: dict[type, Callable[..., pa.Array]] = {
    CategoryColumn: category,
    SubcategoryColumn: subcategory,
    UniformColumn: uniform,
    GaussianColumn: gaussian,
    BernoulliColumn: bernoulli,
    BinomialColumn: binomial,
    PoissonColumn: poisson,
    ScipyColumn: scipy_distribution,
    DatetimeColumn: datetime_,
    TimedeltaColumn: timedelta,
    UUIDColumn: uuid4,
}
