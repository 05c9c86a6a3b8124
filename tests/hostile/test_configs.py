"""Odd and hostile configs: each is one message naming the problem, exit 2, no traceback.

Numbers (NaN, infinity, beyond 64 bits, time zones, date overflow), YAML (alias bombs,
recursive aliases, duplicate keys, binary files), files that are not what they claim, and model
endpoints that could only fail after retries.
"""

from __future__ import annotations

import json

import pytest

from tests.hostile.conftest import write_config
from tests.hostile.harness import check, invoke

REGION = {"name": "region", "type": "category", "values": ["north", "south"]}


def cols(*columns: dict) -> dict:
    return {"columns": [REGION, *columns]}


def col(name: str, type_: str, **fields) -> dict:
    return {"name": name, "type": type_, **fields}


BOMB = """\
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""

# (id, config: dict (dumped as YAML) or str (written as is), words the message must hold)
CONFIGS = [
    # numbers
    (
        "nan-weight",
        cols(col("c", "category", values=["a", "b"], weights=[float("nan"), 1])),
        ["column 'c'", "weights", "finite number"],
    ),
    (
        "inf-weight",
        cols(col("c", "category", values=["a", "b"], weights=[float("inf"), 1])),
        ["column 'c'", "weights", "finite"],
    ),
    ("nan-low", cols(col("u", "uniform", low=float("nan"), high=1)), ["column 'u'", "low", "finite"]),
    ("inf-high", cols(col("u", "uniform", low=0, high=float("inf"))), ["column 'u'", "high", "finite"]),
    ("huge-float-span", cols(col("u", "uniform", low=-1.7e308, high=1.7e308)), ["column 'u'", "high - low"]),
    ("inf-std", cols(col("g", "gaussian", mean=0, std=float("inf"))), ["column 'g'", "std", "finite"]),
    ("nan-p", cols(col("b", "bernoulli", p=float("nan"))), ["column 'b'", "'p'", "finite"]),
    ("nan-failed-share", {**cols(), "max_failed_row_share": float("nan")}, ["max_failed_row_share", "finite"]),
    (
        "int-beyond-int64-values",
        cols(col("c", "category", values=[99999999999999999999999, 1])),
        ["column 'c'", "64-bit"],
    ),
    ("int-bounds-beyond-int64", cols(col("u", "uniform", low=0, high=1e30, dtype="int")), ["column 'u'", "64-bit"]),
    ("seed-beyond-int64", {**cols(), "seed": 2**70}, ["seed", "less than or equal"]),
    ("negative-seed", {**cols(), "seed": -1}, ["seed", "greater than or equal"]),
    ("huge-binomial-n", cols(col("n", "binomial", n=10**30, p=0.5)), ["column 'n'", "'n'", "less than or equal"]),
    ("huge-poisson-mean", cols(col("p", "poisson", mean=1e30)), ["column 'p'", "mean", "less than or equal"]),
    ("huge-decimals", cols(col("g", "gaussian", mean=0, std=1, decimals=10**9)), ["column 'g'", "decimals"]),
    (
        "inf-scipy-param",
        cols(col("s", "scipy", distribution="norm", params={"scale": float("inf")})),
        ["column 's'", "finite"],
    ),
    ("nan-render-timeout", {**cols(), "render_limits": {"timeout_s": float("nan")}}, ["render_limits", "finite"]),
    ("zero-output-limit", {**cols(), "render_limits": {"max_output_chars": 0}}, ["render_limits", "max_output_chars"]),
    (
        "inf-model-timeout",
        {
            **cols(),
            "models": [{"alias": "m", "model": "x", "base_url": "http://127.0.0.1:9/v1", "timeout_s": float("inf")}],
        },
        ["timeout_s", "finite"],
    ),
    (
        "mixed-time-zones",
        cols(col("d", "datetime", start="2024-01-01T00:00:00+00:00", end="2024-06-01T00:00:00")),
        ["column 'd'", "time zone or neither"],
    ),
    (
        "two-utc-offsets",
        cols(col("d", "datetime", start="2024-01-01T00:00:00+05:00", end="2024-06-01T00:00:00-03:00")),
        ["column 'd'", "same UTC offset"],
    ),
    ("year-10000", cols(col("d", "datetime", start="2024-01-01", end="10000-01-01")), ["column 'd'", "end"]),
    (
        "timedelta-overflow",
        cols(
            col("d", "datetime", start="2024-01-01", end="2024-06-01"),
            col("t", "timedelta", reference="d", dt_min=0, dt_max=10**12),
        ),
        ["column 't'", "years 1-9999"],
    ),
    (
        "timedelta-underflow",
        cols(
            col("d", "datetime", start="0002-01-01", end="0003-01-01"),
            col("t", "timedelta", reference="d", dt_min=-(10**4), dt_max=0, unit="D"),
        ),
        ["column 't'", "years 1-9999"],
    ),
    (
        "subcategory-beyond-int64",
        cols(col("s", "subcategory", parent="region", values={"north": [2**64], "south": [1]})),
        ["column 's'", "64-bit"],
    ),
    ("weights-text", cols(col("c", "category", values=["a"], weights=["heavy"])), ["column 'c'", "weights"]),
    (
        "age-range-markup",
        cols(col("p", "person", age_range=[90, 10])),
        ["column 'p'", "age_range must be [min, max] with 0 <= min"],
    ),
    # YAML
    (
        "alias-bomb-unknown-field",
        "columns:\n  - {name: a, type: uuid}\nlaughs:\n  " + BOMB.replace("\n", "\n  "),
        ["expands to more than 1,000,000 values"],
    ),
    (
        "alias-bomb-in-values",
        BOMB + "columns:\n  - {name: c, type: category, values: *i}\n",
        ["expands to more than 1,000,000 values"],
    ),
    ("recursive-alias", "columns: &x\n  - {name: a, type: uuid}\n  - *x\n", ["refers to itself through an alias"]),
    (
        "duplicate-columns-key",
        "columns:\n  - {name: a, type: uuid}\ncolumns:\n  - {name: b, type: uuid}\n",
        ["found the key 'columns' twice", "line 1"],
    ),
    (
        "duplicate-field-in-column",
        "columns:\n  - name: a\n    type: uuid\n    name: b\n",
        ["found the key 'name' twice"],
    ),
    ("duplicate-seed", "seed: 1\nseed: 2\ncolumns:\n  - {name: a, type: uuid}\n", ["found the key 'seed' twice"]),
    ("empty-file", "", ["top level must be a mapping", "NoneType"]),
    ("top-level-list", "- a\n- b\n", ["top level must be a mapping", "list"]),
    ("top-level-text", "just some words\n", ["top level must be a mapping", "str"]),
    ("deep-nesting", "columns: " + "[" * 20000 + "]" * 20000 + "\n", ["nesting depth"]),
    ("tab-indentation", "columns:\n\t- {name: a, type: uuid}\n", ["not valid YAML/JSON at line 2"]),
    ("nul-character", "columns:\n  - {name: a, type: uuid}\x00\n", ["not valid YAML/JSON"]),
    ("huge-unknown-value", {**cols(), "notes": "x" * 1_000_000}, ["'notes'", "is not a known field", "..."]),
    (
        "deeply-nested-unknown-value",
        {**cols(), "wrong": json.loads("[" * 60 + "]" * 60)},
        ["'wrong'", "not a known field", "[[[[...]]]]"],
    ),
    # models and endpoints
    (
        "base-url-without-scheme",
        {**cols(), "models": [{"alias": "m", "model": "x", "base_url": "127.0.0.1:8000/v1"}]},
        ["base_url", "not an http:// or https:// URL"],
    ),
    (
        "base-url-ftp",
        {**cols(), "models": [{"alias": "m", "model": "x", "base_url": "ftp://example.com/v1"}]},
        ["base_url", "http://"],
    ),
    (
        "base-url-with-space",
        {**cols(), "models": [{"alias": "m", "model": "x", "base_url": "http://exa mple.com/v1"}]},
        ["base_url"],
    ),
    (
        "base-url-bad-port",
        {**cols(), "models": [{"alias": "m", "model": "x", "base_url": "http://127.0.0.1:99999/v1"}]},
        ["base_url", "port"],
    ),
    (
        "key-in-api-key-env",
        {
            **cols(),
            "models": [
                {"alias": "m", "model": "x", "base_url": "http://127.0.0.1:9/v1", "api_key_env": "sk-abc123 xyz"}
            ],
        },
        ["api_key_env", "NAME of an environment variable"],
    ),
    (
        "zero-retry-wait",
        {
            **cols(),
            "models": [{"alias": "m", "model": "x", "base_url": "http://127.0.0.1:9/v1", "max_retry_wait_s": 0}],
        },
        ["max_retry_wait_s", "greater than 0"],
    ),
    (
        "unknown-model-alias",
        cols(col("q", "llm_text", model="nope", prompt="hi")),
        ["column 'q'", "unknown model alias 'nope'"],
    ),
    # templates (refused when the config is read)
    (
        "unknown-jinja-filter",
        cols(col("e", "expression", expr="{{ region | shout }}")),
        ["column 'e'", "expr", "No filter named 'shout'"],
    ),
    (
        "deep-template",
        cols(col("e", "expression", expr="{{ " + "(" * 3000 + "1" + ")" * 3000 + " }}")),
        ["column 'e'", "nests too deeply"],
    ),
    (
        "repeat-a-billion",
        cols(col("e", "expression", expr="{{ 'a' * 10**9 }}")),
        ["column 'e'", "render limits", "1,000,000,000"],
    ),
    (
        "center-a-billion",
        cols(col("e", "expression", expr="{{ region|center(999999999) }}")),
        ["column 'e'", "center", "max_output_chars"],
    ),
    (
        "percent-format-filter",
        cols(col("e", "expression", expr="{{ '%0999999999d'|format(1) }}")),
        ["column 'e'", "%-format width 999999999"],
    ),
    (
        "percent-format-star",
        cols(col("e", "expression", expr="{{ '%*d' % (999999999, 1) }}")),
        ["column 'e'", "%-format width 999999999"],
    ),
    ("ljust-a-billion", cols(col("e", "expression", expr="{{ 'x'.ljust(10**9) }}")), ["column 'e'", "ljust"]),
    (
        "str-format-width",
        cols(col("e", "expression", expr="{{ '{:>999999999}'.format(1) }}")),
        ["column 'e'", "format width"],
    ),
    ("huge-power", cols(col("e", "expression", expr="{{ 7 ** 1000000 }}")), ["column 'e'", "bits"]),
    (
        "list-repeat",
        cols(col("e", "expression", expr="{{ ([0] * 10**8)|length }}")),
        ["column 'e'", "repeating a list"],
    ),
    ("indent-a-billion", cols(col("e", "expression", expr="{{ region|indent(10**9) }}")), ["column 'e'", "indent"]),
    (
        "unseeded-random-filter",
        cols(col("e", "expression", expr="{{ ['a', 'b']|random }}")),
        ["column 'e'", "'random' is not reproducible"],
    ),
    (
        "unseeded-lipsum",
        cols(col("e", "expression", expr="{{ lipsum(2) }}")),
        ["column 'e'", "'lipsum' is not reproducible"],
    ),
    (
        "prompt-too-big",
        {
            **cols(col("q", "llm_text", model="m", prompt="{{ 'w' * 10**8 }}")),
            "models": [{"alias": "m", "model": "x", "base_url": "http://127.0.0.1:9/v1"}],
        },
        ["column 'q'", "prompt", "render limits"],
    ),
    (
        "small-limit-constant",
        {**cols(col("e", "expression", expr="{{ 'abc' * 5 }}")), "render_limits": {"max_output_chars": 10}},
        ["column 'e'", "15 characters", "(10)"],
    ),
]


@pytest.mark.parametrize(("config", "words"), [c[1:] for c in CONFIGS], ids=[c[0] for c in CONFIGS])
def test_validate_refuses_with_one_message(tmp_path, config, words):
    path = write_config(tmp_path / "config.yaml", config)
    outcome = invoke("validate", path)
    check(outcome, 2, *words)
    assert len(outcome.output) < 5000, "the message must not quote the input whole"


RUNTIME_REFUSED = [
    c
    for c in CONFIGS
    if c[0]
    in {"nan-weight", "alias-bomb-in-values", "repeat-a-billion", "base-url-without-scheme", "duplicate-columns-key"}
]


@pytest.mark.parametrize(("config", "words"), [c[1:] for c in RUNTIME_REFUSED], ids=[c[0] for c in RUNTIME_REFUSED])
def test_generate_refuses_before_writing_anything(tmp_path, config, words):
    path = write_config(tmp_path / "config.yaml", config)
    check(invoke("generate", path, "-n", 10, "--artifact-path", tmp_path / "out"), 2, *words)
    assert not (tmp_path / "out").exists()


# (id, bytes of the file, words)
FILES = [
    ("png-as-config", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)), ["not UTF-8 text", "0x89"]),
    ("latin-1-config", "columns:\n  - {name: caf\xe9, type: uuid}\n".encode("latin-1"), ["not UTF-8 text", "0xe9"]),
    ("utf-16-config", "columns: []\n".encode("utf-16"), ["not UTF-8 text"]),
]


@pytest.mark.parametrize(("data", "words"), [c[1:] for c in FILES], ids=[c[0] for c in FILES])
def test_binary_config_files(tmp_path, data, words):
    path = tmp_path / "config.yaml"
    path.write_bytes(data)
    check(invoke("validate", path), 2, *words)


def test_a_directory_passed_as_config(tmp_path):
    (tmp_path / "conf.yaml").mkdir()
    check(invoke("validate", tmp_path / "conf.yaml"), 2, "is a directory", "YAML or JSON file")


def test_a_missing_config(tmp_path):
    check(invoke("preview", tmp_path / "gone.yaml"), 2, "gone.yaml does not exist")


def test_an_oversized_config(tmp_path):
    path = tmp_path / "big.yaml"
    with path.open("wb") as fh:
        fh.truncate(40 * 2**20)
    check(invoke("validate", path), 2, "bytes; a config is at most")


# (id, seed file name, how to make it, words)
SEEDS = [
    ("seed-path-is-a-directory", "seed.csv", lambda p: p.mkdir(), ["column 's'", "is a directory"]),
    ("seed-path-missing", "seed.csv", lambda p: None, ["column 's'", "does not exist"]),
    ("seed-csv-garbage", "seed.csv", lambda p: p.write_bytes(b'"\x00\xff' * 50), ["column 's'", "seed file"]),
    ("seed-csv-no-rows", "seed.csv", lambda p: p.write_text("a,b\n"), ["column 's'", "has no rows"]),
    (
        "seed-parquet-garbage",
        "seed.parquet",
        lambda p: p.write_bytes(b"PAR1 not really"),
        ["column 's'", "cannot read seed file"],
    ),
    ("seed-wrong-suffix", "seed.xlsx", lambda p: p.write_text("a\n1\n"), ["column 's'", "must end in .parquet"]),
]


@pytest.mark.parametrize(("name", "make", "words"), [c[1:] for c in SEEDS], ids=[c[0] for c in SEEDS])
def test_odd_seed_files(tmp_path, name, make, words):
    make(tmp_path / name)
    path = write_config(tmp_path / "config.yaml", {"columns": [{"name": "s", "type": "seed_dataset", "path": name}]})
    check(invoke("validate", path), 2, *words)
