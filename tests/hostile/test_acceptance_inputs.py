"""Hostile acceptance rules and validators: each ends in one clear message (a config error, exit
2, naming the rule or column) in bounded time, or in a deterministic verdict; never a traceback,
a hang, or a callable reaching into the engine."""

from __future__ import annotations

import json
import textwrap

import pytest

from dd_core import DDConfigError, load_config
from dd_core.engine.in_process import run_row_group
from dd_core.testing.llm_server import OpenAIServer
from tests.support import run_dd

BASE = {
    "columns": [
        {"name": "n", "type": "uniform", "low": 0, "high": 100, "dtype": "int"},
        {"name": "text", "type": "expression", "expr": "{{ 'x' * n }}"},
    ]
}


def with_rule(rule: str, *columns: dict, **extra) -> dict:
    return {**BASE, "columns": [*BASE["columns"], *columns], "accept": rule, **extra}


@pytest.mark.parametrize(
    "rule, message",
    [
        ("missing > 1", "the rule reads unknown column(s) ['missing']"),
        ("n + 1", "the rule must give true or false, but it gives a number"),
        ("text | length", "it gives a number"),
        ("n > 1 and text", "'and' joins text"),
        ("check.is_vald", "'check' has no field 'is_vald' (its fields: is_valid, reason)"),
        ("text >= 2", "the rule compares text with a number ('text')"),
        ("'a' * 10**9 == text", "the rule exceeds its render limits"),
        ("n.__class__ is none", "forbids"),
        ("text | random == 'x'", "not reproducible"),
        ("n > 1 }} {{ n", "not a Jinja expression"),
        ("   ", "is empty"),
    ],
)
def test_rules_refused_before_a_run(rule, message):
    check = {"name": "check", "type": "validation", "validator": "length", "max": 10, "target_columns": ["text"]}
    with pytest.raises(DDConfigError, match="field 'accept'") as caught:
        load_config(with_rule(rule, check))
    assert message in str(caught.value)


@pytest.mark.parametrize(
    "rule, message",
    [
        ("text.upper()", "on candidate 0 of row group 0 the rule gave 'XXXX"),  # text, known only when run
        ("n > text.upper()", "the rule failed: TypeError: '>' not supported"),  # a call's value: known when run
        ("(text * 100000) | length > 0", "exceeds its render limits: repeating a str"),
        (  # work that grows per row past render_limits.timeout_s
            " and ".join(["(range(100000) | map('string') | join(',') | length) > 0"] * 40),
            "exceeds its render limits: rendering one cell took more than 0.2 s",
        ),
    ],
)
def test_rules_that_fail_on_a_row_stop_the_run_naming_the_candidate(rule, message):
    config = with_rule(rule, render_limits={"timeout_s": 0.2})
    with pytest.raises(DDConfigError) as caught:
        run_row_group(config, 0, 20)
    assert "field 'accept'" in str(caught.value) and message in str(caught.value)


def test_validators_on_huge_values_give_a_verdict_not_a_stall():
    config = {
        "columns": [
            {"name": "n", "type": "uniform", "low": 0, "high": 3, "dtype": "int"},
            {"name": "big", "type": "expression", "expr": "{{ 'x = 1 # ' ~ ('y' * (400000 * n)) }}"},
            *(
                {"name": f"check_{kind}", "type": "validation", "validator": kind, "target_columns": ["big"], **params}
                for kind, params in [
                    ("python", {}),
                    ("sql", {"dialect": "postgres"}),
                    ("json_schema", {"json_schema": {"type": "string"}}),
                    ("regex", {"pattern": "(x+x+)+y"}),
                    ("length", {"max": 500_000}),
                ]
            ),
        ],
        "render_limits": {"max_output_chars": 2_000_000},
    }
    rows = run_row_group(config, 0, 30).table.to_pylist()
    huge = [r for r in rows if len(r["big"]) > 1_000_000]
    assert huge and all(
        not r[f"check_{kind}"]["is_valid"]
        and "more than the 1,000,000 a validator reads" in r[f"check_{kind}"]["reason"]
        for r in huge
        for kind in ("python", "sql", "json_schema", "regex")
    )
    assert all(r["check_length"]["reason"] == f"{len(r['big']):,} characters, more than max 500,000" for r in huge)
    small = [r for r in rows if len(r["big"]) < 20]
    assert small and all(r["check_python"]["is_valid"] for r in small)


def test_a_pattern_that_backtracks_past_the_time_limit_is_a_config_error():
    config = {
        "columns": [
            {"name": "text", "type": "expression", "expr": "{{ 'a' * 40 }}!"},
            {
                "name": "check",
                "type": "validation",
                "validator": "regex",
                "pattern": "^(a|aa)+$",
                "target_columns": ["text"],
            },
        ],
        "render_limits": {"timeout_s": 0.2},
    }
    with pytest.raises(
        DDConfigError, match=r"column 'check', field 'pattern': matching one value took more than 0.2 s"
    ):
        run_row_group(config, 0, 2)


@pytest.fixture
def checks_module(tmp_path, monkeypatch):
    """A module of validator functions, importable from the engine's path."""
    (tmp_path / "hostile_checks.py").write_text(
        textwrap.dedent(
            """
            import os, sys, time
            import dd_core.engine.acceptance as acceptance

            def even(rows):
                return [(r["n"] % 2 == 0, f"{r['n']} is odd") for r in rows]

            def raises(rows):
                if rows:
                    raise ValueError("no verdict for you")
                return []

            def sleeps(rows):
                if rows:
                    time.sleep(60)
                return []

            def exits(rows):
                if rows:
                    print("going away", file=sys.stderr)
                    os._exit(3)
                return []

            def wrong_count(rows):
                return [True]

            def strings(rows):
                return ["yes" for _ in rows]

            def tampers(rows):
                # Tries to reach the engine: its own copy of the rows, its own module state.
                for r in rows:
                    r["n"] = -1
                acceptance.WAVE_MARGIN = 1000.0
                print("noise on stdout")
                return [r["n"] == -1 for r in rows]
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    return "hostile_checks"


def callable_config(function: str, **params) -> dict:
    return with_rule(
        "check.is_valid",
        {"name": "check", "type": "validation", "validator": "callable", "function": function, "target_columns": ["n"]}
        | params,
    )


def test_a_callable_validator_runs_on_a_copy_of_the_batch_in_its_own_process(checks_module):
    result = run_row_group(callable_config(f"{checks_module}:even"), 0, 30)
    assert result.table.num_rows == 30 and all(n % 2 == 0 for n in result.table.column("n").to_pylist())
    tampered = run_row_group(callable_config(f"{checks_module}:tampers"), 0, 30)
    # Its changes stayed in its process: the rows are the engine's, and the waves kept their size.
    assert tampered.table.column("n").to_pylist() == run_row_group({**BASE}, 0, 30).table.column("n").to_pylist()
    assert tampered.acceptance.candidates == 30


@pytest.mark.parametrize(
    "function, params, message",
    [
        ("no_such_module_anywhere:check", {}, "cannot import module 'no_such_module_anywhere': ModuleNotFoundError"),
        ("{m}:nothing_here", {}, "has no function 'nothing_here'"),
        ("{m}:raises", {}, "raised ValueError: no verdict for you"),
        ("{m}:sleeps", {"timeout_s": 1}, "took more than timeout_s (1 s) over a batch of 20 rows"),
        ("{m}:exits", {}, "exited with code 3 without an answer (going away)"),
        ("{m}:wrong_count", {}, "returned 1 verdict(s) for a batch of 20 rows"),
        ("{m}:strings", {}, "verdict 0 is 'yes': give True/False"),
    ],
)
def test_callables_that_are_missing_or_misbehave_fail_with_the_column_named(checks_module, function, params, message):
    with pytest.raises(DDConfigError, match="column 'check', field 'function'") as caught:
        run_row_group(callable_config(function.format(m=checks_module), **params), 0, 20)
    assert message in str(caught.value)


def test_a_missing_callable_fails_the_command_before_any_llm_call(tmp_path):
    with OpenAIServer(latency_ms=1) as server:
        config = callable_config("no_such_module_anywhere:check")
        config["models"] = [{"alias": "w", "model": "m", "base_url": server.base_url}]
        config["columns"].append({"name": "q", "type": "llm_text", "model": "w", "prompt": "{{ n }}"})
        path = tmp_path / "c.json"
        path.write_text(json.dumps(config))
        for command in (["validate", path], ["generate", path, "-n", 10, "--artifact-path", tmp_path / "out"]):
            run = run_dd(*command)
            assert run.returncode == 2 and "cannot import module 'no_such_module_anywhere'" in run.stderr
            assert "Traceback" not in run.stderr
        assert server.stats()["requests_total"] == 0
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
