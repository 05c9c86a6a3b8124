"""The fingerprint changes with everything that changes the data, and with nothing else."""

from __future__ import annotations

import copy
import json

import pytest
import yaml

from dd_core import fingerprint, load_config
from tests.support import EXAMPLES


def _hash(config) -> str:
    return fingerprint(load_config(config))["config_hash"]


@pytest.fixture
def base() -> dict:
    return yaml.safe_load((EXAMPLES / "customers.yaml").read_text())


def test_shape_of_the_fingerprint(base):
    fp = fingerprint(load_config(base))
    assert fp["config_hash"].startswith("sha256:") and len(fp["config_hash"]) == 7 + 64
    assert fp["config_hash_algo"] == "sha256"
    assert isinstance(fp["config_hash_version"], int)


def test_key_order_does_not_matter(base):
    reordered = {k: base[k] for k in reversed(list(base))}
    reordered["columns"] = [dict(reversed(list(c.items()))) for c in base["columns"]]
    assert _hash(reordered) == _hash(base)


def test_yaml_and_json_and_comments_do_not_matter(tmp_path, base):
    as_json = tmp_path / "c.json"
    as_json.write_text(json.dumps(base, indent=1))
    commented = tmp_path / "c.yaml"
    commented.write_text("# a comment\n" + yaml.safe_dump(base).replace("columns:", "columns: # the columns\n", 1))
    assert _hash(as_json) == _hash(commented) == _hash(EXAMPLES / "customers.yaml")


def test_names_descriptions_and_explicit_defaults_do_not_matter(base):
    changed = copy.deepcopy(base)
    changed["name"] = "another-name"
    changed["description"] = "why this dataset exists"
    changed["columns"][0]["description"] = "the sales region"
    changed["columns"][5]["short_form"] = False  # the default, written out
    changed["columns"][5]["uppercase"] = False
    assert _hash(changed) == _hash(base)


def test_equivalent_weights_and_numbers_hash_the_same(base):
    changed = copy.deepcopy(base)
    changed["columns"][0]["weights"] = [4, 3, 2, 1]
    changed["columns"][2]["low"] = 0.0
    changed["columns"][2]["high"] = 100
    assert _hash(changed) == _hash(base)


def test_hash_is_stable_across_save_and_reload(tmp_path, base):
    config = load_config(base)
    saved = tmp_path / "saved.json"
    for _ in range(3):
        saved.write_text(json.dumps(config.model_dump(mode="json")))
        config = load_config(saved)
    assert fingerprint(config)["config_hash"] == _hash(base)


# (column index in customers.yaml, field, new value): every output-affecting field.
SENSITIVE = [
    (0, "values", ["south", "north", "east", "west"]),
    (0, "weights", [0.25, 0.25, 0.25, 0.25]),
    (0, "name", "area"),
    (
        1,
        "values",
        {
            "north": ["oslo", "bergen"],
            "south": ["rome", "madrid"],
            "east": ["warsaw", "kyiv"],
            "west": ["lisbon", "dublin"],
        },
    ),
    (2, "low", 1),
    (2, "high", 99),
    (2, "decimals", 3),
    (2, "dtype", "int"),
    (3, "mean", 171),
    (3, "std", 11),
    (3, "decimals", 2),
    (3, "clip", [150, 190]),
    (4, "start", "2020-01-02"),
    (4, "end", "2025-01-02"),
    (4, "unit", "hour"),
    (4, "format", "%d.%m.%Y"),
    (5, "prefix", "r-"),
    (5, "short_form", True),
    (5, "uppercase", True),
    (6, "mean", 3.5),
    (7, "p", 0.71),
    (8, "locale", "de_DE"),
    (8, "age_range", [18, 81]),
    (8, "sex", "Female"),
    (9, "expr", "{{ region }}"),
    (9, "dtype", "str-changed"),
]


@pytest.mark.parametrize(("index", "field", "value"), SENSITIVE, ids=[f"{i}-{f}" for i, f, _ in SENSITIVE])
def test_every_output_affecting_field_changes_the_hash(base, index, field, value):
    changed = copy.deepcopy(base)
    if field == "name":
        changed["columns"][1]["parent"] = value
        changed["columns"][9]["expr"] = changed["columns"][9]["expr"].replace("region", value)
    if value == "str-changed":
        changed["columns"][9]["expr"] = "{{ n_orders }}"
        changed["columns"][9]["dtype"] = value = "int"
    changed["columns"][index][field] = value
    assert _hash(changed) != _hash(base)


def test_seed_and_processors_change_the_hash(base):
    assert _hash({**base, "seed": 43}) != _hash(base)
    dropped = {**base, "processors": [{"type": "drop_columns", "columns": ["summary"]}]}
    renamed = {**base, "processors": [{"type": "rename_columns", "columns": {"summary": "text"}}]}
    assert len({_hash(base), _hash(dropped), _hash(renamed)}) == 3


def test_other_sampler_parameters_change_the_hash():
    def config(**params):
        cols = [
            {"name": "b", "type": "binomial", "n": params.get("n", 5), "p": params.get("p", 0.5)},
            {
                "name": "s",
                "type": "scipy",
                "distribution": params.get("dist", "gamma"),
                "params": params.get("params", {"a": 2.0}),
            },
            {"name": "d", "type": "datetime", "start": "2020-01-01", "end": "2021-01-01"},
            {
                "name": "t",
                "type": "timedelta",
                "reference": "d",
                "dt_min": params.get("dt_min", 0),
                "dt_max": 5,
                "unit": params.get("unit", "D"),
            },
        ]
        return _hash({"columns": cols})

    variants = [
        config(),
        config(n=6),
        config(p=0.4),
        config(dist="expon", params={}),
        config(params={"a": 3.0}),
        config(dt_min=1),
        config(unit="h"),
    ]
    assert len(set(variants)) == len(variants)


def test_seed_file_content_counts_but_its_path_does_not(tmp_path):
    data = "k,v\na,1\nb,2\n"
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    (tmp_path / "one" / "seed.csv").write_text(data)
    (tmp_path / "two" / "moved.csv").write_text(data)

    def config(path):
        return {"columns": [{"name": "s", "type": "seed_dataset", "path": str(path)}]}

    first = _hash(config(tmp_path / "one" / "seed.csv"))
    assert _hash(config(tmp_path / "two" / "moved.csv")) == first
    (tmp_path / "two" / "moved.csv").write_text(data + "c,3\n")
    assert _hash(config(tmp_path / "two" / "moved.csv")) != first
