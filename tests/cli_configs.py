"""Configs a new user's first commands meet besides the examples: one column, forty columns,
and values that are long and odd (2,000 characters, newlines, wide Unicode, text that looks
like markup or carries escape sequences, structs and lists). Each writes its files into a
folder and returns the config's path."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import yaml

#: Values a terminal would act on or lay out wrongly if they were printed carelessly.
MARKUP = "[bold red]not bold[/] [link=http://example.invalid]no link[/link] :smile:"
ESCAPES = "before\x1b[2J\x1b[31mred\x07after"
WIDE = "漢字かな 🙂 e\u0301 ＦＵＬＬ"
LONG = "x" * 1990 + "0123456789"
LINES = "first line\nsecond line\n\nfourth line"
STRUCT = {"a": 1, "tags": ["x", "y"], "inner": {"b": None}}
NUMBERS = [1, 2, 3]


def _write(folder: Path, name: str, config: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True))
    return path


def one_column(folder: Path) -> Path:
    return _write(
        folder,
        "one_column",
        {"name": "one_column", "columns": [{"name": "colour", "type": "category", "values": ["red", "green"]}]},
    )


def five_columns(folder: Path) -> Path:
    columns = [
        {"name": "region", "type": "category", "values": ["north", "south"]},
        {"name": "score", "type": "uniform", "low": 0, "high": 10, "decimals": 1},
        {"name": "active", "type": "bernoulli", "p": 0.5},
        {"name": "visits", "type": "poisson", "mean": 3},
        {"name": "label", "type": "expression", "expr": "{{ region }}-{{ visits }}"},
    ]
    return _write(folder, "five_columns", {"name": "five_columns", "seed": 5, "columns": columns})


def forty_columns(folder: Path) -> Path:
    """Forty columns of every sampler kind and expressions over them."""
    kinds = [
        {"type": "category", "values": ["a", "b", "c"]},
        {"type": "uniform", "low": 0, "high": 100, "decimals": 2},
        {"type": "gaussian", "mean": 0, "std": 1, "decimals": 3},
        {"type": "bernoulli", "p": 0.3},
        {"type": "binomial", "n": 10, "p": 0.5},
        {"type": "poisson", "mean": 4},
        {"type": "datetime", "start": "2024-01-01", "end": "2024-12-31", "unit": "day", "format": "%Y-%m-%d"},
        {"type": "uuid", "short_form": True},
    ]
    columns = [{"name": f"c{i:02d}", **kinds[i % len(kinds)]} for i in range(32)]
    columns += [
        {"name": f"e{i:02d}", "type": "expression", "expr": f"{{{{ c{i:02d} }}}}/{{{{ c{i + 1:02d} }}}}"}
        for i in range(8)
    ]
    return _write(folder, "forty_columns", {"name": "forty_columns", "seed": 40, "columns": columns})


def odd_values(folder: Path) -> Path:
    """A seed file of odd values (nested types need parquet) and an expression over them."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = [
        {
            "long": LONG,
            "lines": LINES,
            "wide": WIDE,
            "markup": MARKUP,
            "escapes": ESCAPES,
            "struct": STRUCT,
            "numbers": NUMBERS,
        },
        {
            "long": "word " * 400,
            "lines": "a\r\nb",
            "wide": "ＦＵＬＬＷＩＤＴＨ",
            "markup": "[/]",
            "escapes": "\x00\x1f\x7f\x9b",
            "struct": {"a": 2, "tags": [], "inner": {"b": 1.5}},
            "numbers": [],
        },
    ]
    pq.write_table(pa.Table.from_pylist(rows), folder / "odd_values.parquet")
    columns = [
        {
            "name": "odd",
            "type": "seed_dataset",
            "path": "odd_values.parquet",
            "columns": ["long", "lines", "wide", "markup", "escapes", "struct", "numbers"],
        },
        {"name": "quoted", "type": "expression", "expr": "<{{ markup }}> {{ wide }}"},
    ]
    return _write(folder, "odd_values", {"name": "odd_values", "seed": 1, "columns": columns})
