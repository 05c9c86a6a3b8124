"""Samplers honour their parameters (checked statistically on many rows)."""

from __future__ import annotations

import datetime as dt
import re
import uuid

import numpy as np
import pytest

from dd_core import DDConfigError, generate_row_group
from dd_core.engine.person import vocabulary

N = 100_000


def one(column: dict, n: int = N, extra: list | None = None) -> list:
    table = generate_row_group({"columns": [*(extra or []), column]}, 0, n)
    return table.column(column["name"]).to_pylist()


def test_category_weights():
    values = np.array(
        one({"name": "c", "type": "category", "values": ["a", "b", "c", "d"], "weights": [0.4, 0.3, 0.2, 0.1]})
    )
    for value, p in zip("abcd", (0.4, 0.3, 0.2, 0.1)):
        assert abs((values == value).mean() - p) < 0.01


def test_category_without_weights_is_uniform_and_keeps_value_types():
    values = one({"name": "c", "type": "category", "values": [1, 2, 3]}, 30_000)
    assert set(values) == {1, 2, 3}
    assert all(abs(values.count(v) / 30_000 - 1 / 3) < 0.015 for v in (1, 2, 3))


def test_subcategory_follows_its_parent():
    parent = {"name": "region", "type": "category", "values": ["north", "south"], "weights": [0.5, 0.5]}
    table = generate_row_group(
        {
            "columns": [
                parent,
                {
                    "name": "city",
                    "type": "subcategory",
                    "parent": "region",
                    "values": {"north": ["oslo", "bergen"], "south": ["rome"]},
                },
            ]
        },
        0,
        20_000,
    )
    pairs = list(zip(table.column("region").to_pylist(), table.column("city").to_pylist()))
    assert {p for p in pairs} == {("north", "oslo"), ("north", "bergen"), ("south", "rome")}
    north = [c for r, c in pairs if r == "north"]
    assert abs(north.count("oslo") / len(north) - 0.5) < 0.02


def test_uniform_float_decimals_and_int_bounds():
    floats = np.array(one({"name": "u", "type": "uniform", "low": 10, "high": 20, "decimals": 2}))
    assert floats.min() >= 10 and floats.max() <= 20 and abs(floats.mean() - 15) < 0.05
    assert np.allclose(floats, np.round(floats, 2))
    ints = one({"name": "u", "type": "uniform", "low": 1, "high": 6, "dtype": "int"}, 30_000)
    assert set(ints) == {1, 2, 3, 4, 5, 6}


def test_gaussian_moments_and_clip():
    values = np.array(one({"name": "g", "type": "gaussian", "mean": 170, "std": 10}))
    assert abs(values.mean() - 170) < 0.2 and abs(values.std() - 10) < 0.2
    clipped = np.array(one({"name": "g", "type": "gaussian", "mean": 0, "std": 1, "clip": [-1, 1], "decimals": 1}))
    assert clipped.min() == -1 and clipped.max() == 1


def test_bernoulli_binomial_poisson_means():
    assert abs(np.mean(one({"name": "b", "type": "bernoulli", "p": 0.7})) - 0.7) < 0.01
    assert abs(np.mean(one({"name": "b", "type": "binomial", "n": 10, "p": 0.3})) - 3) < 0.03
    poisson = np.array(one({"name": "p", "type": "poisson", "mean": 3}))
    assert abs(poisson.mean() - 3) < 0.03 and abs(poisson.var() - 3) < 0.1


def test_scipy_distribution():
    values = np.array(one({"name": "s", "type": "scipy", "distribution": "beta", "params": {"a": 2, "b": 8}}))
    assert abs(values.mean() - 0.2) < 0.005 and values.min() >= 0 and values.max() <= 1


def test_datetime_range_unit_and_format():
    texts = one(
        {
            "name": "d",
            "type": "datetime",
            "start": "2020-01-01",
            "end": "2025-01-01",
            "unit": "day",
            "format": "%Y-%m-%d",
        },
        20_000,
    )
    days = {dt.date.fromisoformat(t) for t in texts}
    assert min(days) >= dt.date(2020, 1, 1) and max(days) < dt.date(2025, 1, 1) and len(days) > 1500
    stamps = one({"name": "d", "type": "datetime", "start": "2024-01-01", "end": "2024-01-02", "unit": "m"}, 5000)
    assert all(s.second == 0 and s.date() == dt.date(2024, 1, 1) for s in stamps)


def test_timedelta_offsets_stay_within_bounds():
    table = generate_row_group(
        {
            "columns": [
                {"name": "start", "type": "datetime", "start": "2024-01-01", "end": "2024-02-01", "unit": "h"},
                {
                    "name": "end",
                    "type": "timedelta",
                    "reference": "start",
                    "dt_min": 2,
                    "dt_max": 5,
                    "unit": "D",
                    "format": "%Y-%m-%dT%H",
                },
            ]
        },
        0,
        5000,
    )
    deltas = {
        (dt.datetime.strptime(e, "%Y-%m-%dT%H") - s).days
        for s, e in zip(table.column("start").to_pylist(), table.column("end").to_pylist())
    }
    assert deltas == {2, 3, 4, 5}


def test_uuid_variants():
    ids = one({"name": "i", "type": "uuid"}, 50_000)
    assert len(set(ids)) == len(ids)
    assert all(uuid.UUID(i).version == 4 for i in ids[:1000])
    prefixed = one({"name": "i", "type": "uuid", "prefix": "rec-", "uppercase": True}, 100)
    assert all(
        re.fullmatch(r"rec-[0-9A-F]{8}-[0-9A-F]{4}-4[0-9A-F]{3}-[89AB][0-9A-F]{3}-[0-9A-F]{12}", i) for i in prefixed
    )
    short = one({"name": "i", "type": "uuid", "short_form": True}, 100)
    assert all(re.fullmatch(r"[0-9a-f]{8}", i) for i in short)


def test_person_fields_follow_locale_and_parameters():
    people = one({"name": "p", "type": "person", "locale": "en_US", "age_range": [18, 80]}, 20_000)
    vocab = vocabulary("en_US")
    female_names = set(vocab.female.values.tolist())
    assert set(people[0]) >= {"first_name", "last_name", "sex", "age", "email", "city", "state"}
    assert min(p["age"] for p in people) == 18 and max(p["age"] for p in people) == 80
    assert abs(sum(p["sex"] == "Female" for p in people) / len(people) - 0.5) < 0.02
    assert all(p["first_name"] in female_names for p in people if p["sex"] == "Female")
    assert all(re.fullmatch(r"[a-z]+\.[a-z]+\d{1,2}@[\w.-]+", p["email"]) for p in people)
    assert len({p["last_name"] for p in people}) > 500
    german = one({"name": "p", "type": "person", "locale": "de_DE", "sex": "Male"}, 2000)
    assert {p["sex"] for p in german} == {"Male"}
    assert set(p["first_name"] for p in german) <= set(vocabulary("de_DE").male.values.tolist())


def test_expression_dtypes_nested_fields_and_empty_values():
    cols = [
        {"name": "n", "type": "poisson", "mean": 3},
        {"name": "p", "type": "person"},
        {"name": "as_int", "type": "expression", "expr": "{{ n * 2 }}", "dtype": "int"},
        {"name": "as_bool", "type": "expression", "expr": "{{ n > 2 }}", "dtype": "bool"},
        {"name": "maybe", "type": "expression", "expr": "{% if n > 2 %}{{ n / 2 }}{% endif %}", "dtype": "float"},
        {"name": "greeting", "type": "expression", "expr": "Hi {{ p.first_name }}"},
    ]
    table = generate_row_group({"columns": cols}, 0, 2000)
    rows = table.to_pylist()
    assert len(rows) == 2000  # rows that render empty are kept, never dropped
    for row in rows:
        assert row["as_int"] == row["n"] * 2
        assert row["as_bool"] == (row["n"] > 2)
        assert row["maybe"] == (row["n"] / 2 if row["n"] > 2 else None)
        assert row["greeting"] == f"Hi {row['p']['first_name']}"


def test_expression_that_does_not_fit_its_dtype_names_column_and_row():
    cols = [
        {"name": "w", "type": "category", "values": ["x"]},
        {"name": "e", "type": "expression", "expr": "{{ w }}", "dtype": "int"},
    ]
    with pytest.raises(DDConfigError, match=r"column 'e', field 'dtype': row 0 rendered 'x', which is not a int"):
        generate_row_group({"columns": cols}, 0, 5)


def test_sandbox_refuses_unsafe_calls_at_render_time():
    cols = [
        {"name": "w", "type": "category", "values": ["x"]},
        {"name": "e", "type": "expression", "expr": "{{ w.format.__globals__ }}"},
    ]
    with pytest.raises(DDConfigError, match="sandbox forbids"):
        generate_row_group({"columns": cols}, 0, 5)
    cols[1]["expr"] = "{{ (w|attr('__class__')) }}"
    with pytest.raises(DDConfigError, match="column 'e', field 'expr': template refused by the sandbox"):
        generate_row_group({"columns": cols}, 0, 5)
