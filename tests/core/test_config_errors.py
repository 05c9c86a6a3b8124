"""Malformed configs give a typed error naming the column and field; the CLI exits 2 without a traceback."""

from __future__ import annotations

import json

import pytest

from dd_core import DDConfigError, load_config
from tests.support import run_dd

CATEGORY = {"name": "region", "type": "category", "values": ["north", "south"]}

# (case id, config, column named, field named, words the message must contain)
MALFORMED = [
    ("unknown type", {"columns": [{"name": "a", "type": "normalish"}]}, "a", "type", "unknown column type"),
    ("missing type", {"columns": [{"name": "a", "values": [1]}]}, "a", "type", "needs a 'type'"),
    ("missing field", {"columns": [{"name": "a", "type": "category"}]}, "a", "values", "required"),
    (
        "unknown field",
        {"columns": [{"name": "a", "type": "poisson", "mean": 2, "lamda": 3}]},
        "a",
        "lamda",
        "not a known field",
    ),
    ("weights length", {"columns": [{**CATEGORY, "weights": [1]}]}, "region", "weights", "one weight per value"),
    ("negative weight", {"columns": [{**CATEGORY, "weights": [1, -1]}]}, "region", "weights", "negative"),
    ("zero weights", {"columns": [{**CATEGORY, "weights": [0, 0]}]}, "region", "weights", "all be zero"),
    (
        "mixed value types",
        {"columns": [{"name": "a", "type": "category", "values": ["x", 1]}]},
        "a",
        "values",
        "mix types",
    ),
    ("uniform bounds", {"columns": [{"name": "a", "type": "uniform", "low": 5, "high": 1}]}, "a", "high", "below high"),
    (
        "probability range",
        {"columns": [{"name": "a", "type": "bernoulli", "p": 1.5}]},
        "a",
        "p",
        "less than or equal to 1",
    ),
    (
        "negative std",
        {"columns": [{"name": "a", "type": "gaussian", "mean": 0, "std": -1}]},
        "a",
        "std",
        "greater than or equal to 0",
    ),
    (
        "datetime order",
        {"columns": [{"name": "a", "type": "datetime", "start": "2024-01-01", "end": "2020-01-01"}]},
        "a",
        "end",
        "before end",
    ),
    (
        "bad strftime",
        {"columns": [{"name": "a", "type": "datetime", "start": "2020-01-01", "end": "2024-01-01", "format": "%Y-%"}]},
        "a",
        "format",
        "strftime",
    ),
    (
        "cycle",
        {
            "columns": [
                {"name": "a", "type": "expression", "expr": "{{ b }}"},
                {"name": "b", "type": "expression", "expr": "{{ a }}x"},
            ]
        },
        "a",
        "dependencies",
        "cycle: a -> b -> a",
    ),
    (
        "unknown reference",
        {"columns": [CATEGORY, {"name": "s", "type": "expression", "expr": "{{ regoin }}"}]},
        "s",
        "expr",
        "unknown column 'regoin'",
    ),
    (
        "unknown parent",
        {"columns": [{"name": "city", "type": "subcategory", "parent": "nowhere", "values": {"a": ["b"]}}]},
        "city",
        "parent",
        "unknown column 'nowhere'",
    ),
    (
        "parent values uncovered",
        {
            "columns": [
                CATEGORY,
                {"name": "city", "type": "subcategory", "parent": "region", "values": {"north": ["oslo"]}},
            ]
        },
        "city",
        "values",
        "'south'",
    ),
    (
        "template syntax",
        {"columns": [{"name": "a", "type": "expression", "expr": "{{ oops "}]},
        "a",
        "expr",
        "syntax error",
    ),
    (
        "sandbox escape",
        {"columns": [CATEGORY, {"name": "a", "type": "expression", "expr": "{{ region.__class__.__mro__ }}"}]},
        "a",
        "expr",
        "'__class__', '__mro__'",
    ),
    (
        "sandbox subclasses",
        {"columns": [CATEGORY, {"name": "a", "type": "expression", "expr": "{{ region['__subclasses__'] }}"}]},
        "a",
        "expr",
        "'__subclasses__'",
    ),
    ("duplicate name", {"columns": [CATEGORY, {**CATEGORY}]}, "region", "name", "already used"),
    (
        "bad column name",
        {"columns": [{"name": "my col", "type": "poisson", "mean": 1}]},
        "my col",
        "name",
        "not a valid column name",
    ),
    (
        "unknown scipy distribution",
        {"columns": [{"name": "a", "type": "scipy", "distribution": "nosuch"}]},
        "a",
        "distribution",
        "no distribution",
    ),
    (
        "bad scipy params",
        {"columns": [{"name": "a", "type": "scipy", "distribution": "gamma", "params": {"b": 1}}]},
        "a",
        "params",
        "do not fit",
    ),
    ("unknown locale", {"columns": [{"name": "p", "type": "person", "locale": "xx_YY"}]}, "p", "locale", "no locale"),
    (
        "timedelta reference type",
        {"columns": [CATEGORY, {"name": "t", "type": "timedelta", "reference": "region", "dt_min": 0, "dt_max": 3}]},
        "t",
        "reference",
        "datetime",
    ),
    (
        "missing seed file",
        {"columns": [{"name": "s", "type": "seed_dataset", "path": "no/such.csv"}]},
        "s",
        "path",
        "does not exist",
    ),
    (
        "expression dtype",
        {"columns": [{"name": "a", "type": "expression", "expr": "x", "dtype": "decimal"}]},
        "a",
        "dtype",
        "'str'",
    ),
]


@pytest.mark.parametrize(
    ("config", "column", "field", "words"), [c[1:] for c in MALFORMED], ids=[c[0] for c in MALFORMED]
)
def test_malformed_config_names_column_and_field(config, column, field, words):
    with pytest.raises(DDConfigError) as info:
        load_config(config)
    issue = info.value.issues[0]
    assert (issue.column, issue.field) == (column, field), str(info.value)
    assert words in str(info.value)


def test_processor_errors_name_the_processor():
    config = {"columns": [CATEGORY], "processors": [{"type": "drop_columns", "columns": ["nope"]}]}
    with pytest.raises(DDConfigError, match=r"processors\[0\] \(drop_columns\) names unknown column\(s\) \['nope'\]"):
        load_config(config)


def test_processors_may_not_drop_everything():
    config = {"columns": [CATEGORY], "processors": [{"type": "drop_columns", "columns": ["region"]}]}
    with pytest.raises(DDConfigError, match="drop every column"):
        load_config(config)


def test_bad_yaml_reports_the_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("columns:\n  - name: a\n    type: [category\n")
    with pytest.raises(DDConfigError, match=r"not valid YAML/JSON at line \d+"):
        load_config(path)


def test_top_level_must_be_a_mapping(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- a\n- b\n")
    with pytest.raises(DDConfigError, match="top level must be a mapping"):
        load_config(path)


def test_several_problems_are_reported_together():
    config = {"columns": [{"name": "a", "type": "poisson"}, {"name": "b", "type": "bernoulli", "p": 3}]}
    with pytest.raises(DDConfigError) as info:
        load_config(config)
    assert {(i.column, i.field) for i in info.value.issues} == {("a", "mean"), ("b", "p")}


CLI_CASES = [(c, ("validate", "preview", "generate")[i % 3]) for i, c in enumerate(MALFORMED[::4])]


@pytest.mark.parametrize(("case", "command"), CLI_CASES, ids=[f"{c[0]}-{cmd}" for c, cmd in CLI_CASES])
def test_cli_exits_2_with_one_message_and_no_traceback(tmp_path, case, command):
    _, config, column, field, words = case
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    extra = ["-n", "5", "--artifact-path", tmp_path] if command == "generate" else []
    result = run_dd(command, path, *extra)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert f"column '{column}'" in result.stderr and f"field '{field}'" in result.stderr and words in result.stderr
    assert result.stderr.count("Error:") == 1


def test_cli_bad_yaml_exits_2(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("columns: [\n")
    result = run_dd("validate", path)
    assert result.returncode == 2 and "Traceback" not in result.stderr and "not valid YAML" in result.stderr
