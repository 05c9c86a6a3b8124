"""Templates that only show their cost when rendered: each cell is bounded in time and output
(render_limits), the refusal names the column, and a run that meets one leaves no folder."""

from __future__ import annotations

import pytest

from tests.hostile.conftest import write_config
from tests.hostile.harness import check, invoke

TEXT = {"name": "word", "type": "category", "values": ["alpha", "beta"]}
#: For the templates that must run out of time. The others get all the time a busy machine may
#: need, so the limit each case is about is the one that refuses it.
FAST = {"timeout_s": 0.3}


def expression(expr: str, limits: dict | None = None, **extra) -> dict:
    return {
        "columns": [TEXT, {"name": "e", "type": "expression", "expr": expr, **extra}],
        "render_limits": {"timeout_s": 60, **(limits or {})},
    }


# (id, config, words): each refused while rendering row group 0
RENDERED = [
    (
        "nested-range-loops",
        expression("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}", FAST),
        ["took more than 0.3 s", "render_limits.timeout_s"],
    ),
    (
        "loop-over-a-list-twice",
        expression("{% set l = range(100000)|list %}{% for a in l %}{% for b in l %}{% endfor %}{% endfor %}", FAST),
        ["took more than 0.3 s"],
    ),
    (
        "doubling-in-a-loop",
        expression(
            "{% set ns = namespace(s=word) %}{% for i in range(60) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s }}"
        ),
        ["joining these values with ~", "max_output_chars"],
    ),
    (
        "doubling-written-out",
        expression("{% set s = word %}" + "{% set s = s ~ s %}" * 40 + "{{ s|length }}"),
        ["joining these values with ~"],
    ),
    (
        "doubling-with-plus",
        expression(
            "{% set ns = namespace(s=[1]) %}{% for i in range(60) %}{% set ns.s = ns.s + ns.s %}{% endfor %}{{ ns.s|length }}"
        ),
        ["joining these values"],
    ),
    ("recursive-macro", expression("{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}"), ["recursion is too deep"]),
    (
        "output-in-a-loop",
        expression("{% for i in range(100000) %}{{ word * 1000 }}{% endfor %}"),
        ["the template's output", "max_output_chars"],
    ),
    (
        "captured-block",
        expression("{% set x %}{% for i in range(100000) %}{{ word * 1000 }}{% endfor %}{% endset %}{{ x|length }}"),
        ["the template's output"],
    ),
    (
        "column-times-a-billion",
        expression("{{ word * 1000000000 }}"),
        ["repeating a str of length", "1,000,000,000 times"],
    ),
    ("tojson-indent", expression("{{ [[[[word]]]]|tojson(indent=1000000) }}"), ["the filter tojson"]),
    ("replace-empty", expression("{{ word|replace('', word * 100000) }}"), ["the filter replace"]),
    (
        "wordwrap-string",
        expression("{{ (word * 1000)|wordwrap(1, wrapstring=word * 10000) }}"),
        ["the filter wordwrap"],
    ),
    ("zfill-method", expression("{{ word.zfill(10**9) }}"), ["the method zfill"]),
    ("expandtabs-method", expression("{{ ('\t' * 1000 ~ word).expandtabs(10**6) }}"), ["the method expandtabs"]),
    ("join-method", expression("{{ (word * 100000).join(range(100)|map('string')) }}"), ["join"]),
    ("join-filter", expression("{{ ([word * 100000] * 100)|join }}"), ["the filter join"]),
    ("sum-of-lists", expression("{{ ([[word] * 100000] * 100000)|sum(start=[])|length }}"), ["the filter sum"]),
    ("slice-a-billion", expression("{{ word|slice(10**9)|list|length }}"), ["slice"]),
    ("batch-padding", expression("{{ [word]|batch(10**9, 'x')|list|length }}"), ["batch(1000000000) padded"]),
    ("format-method-nested-width", expression("{{ '{:>{w}}'.format(word, w=10**9) }}"), ["format width"]),
    ("percent-with-column-width", expression("{{ '%*s' % (word|length * 10**8, word) }}"), ["%-format width"]),
    (
        "big-integer-product",
        expression(
            "{% set ns = namespace(n=3) %}{% for i in range(40) %}{% set ns.n = ns.n * ns.n %}{% endfor %}{{ ns.n % 10 }}"
        ),
        ["bits"],
    ),
    ("unknown-test-at-render", expression("{% if word is shouty %}x{% endif %}"), ["No test named 'shouty'"]),
    (
        "small-output-limit",
        expression("{{ word ~ word ~ word }}", {"max_output_chars": 6}),
        ["(6)", "max_output_chars"],
    ),
    ("int-beyond-int64", expression("{{ 2 ** 70 }}", dtype="int"), ["does not fit in a 64-bit int"]),
    ("int-thousands-of-digits", expression("{{ '9' * 5000 }}", dtype="int"), ["which is not a int"]),
]


@pytest.mark.parametrize(("config", "words"), [c[1:] for c in RENDERED], ids=[c[0] for c in RENDERED])
def test_preview_refuses_naming_the_column(tmp_path, config, words):
    path = write_config(tmp_path / "config.yaml", config)
    check(invoke("preview", path, "-n", 2), 2, "column 'e'", *words)


@pytest.mark.parametrize("case", ["nested-range-loops", "doubling-in-a-loop", "recursive-macro"])
def test_generate_meeting_a_limit_leaves_no_folder(tmp_path, case):
    config = next(c[1] for c in RENDERED if c[0] == case)
    path = write_config(tmp_path / "config.yaml", config)
    check(
        invoke("generate", path, "-n", 50, "--artifact-path", tmp_path / "out", "--dataset-name", "ds"), 2, "column 'e'"
    )
    assert not (tmp_path / "out" / "ds").exists()


def test_limits_are_configurable(tmp_path):
    """What the default limits refuse, a config that raises them renders."""
    config = expression("{{ word * 2000000 }}", {"max_output_chars": 20_000_000})
    path = write_config(tmp_path / "config.yaml", config)
    check(invoke("generate", path, "-n", 2, "--artifact-path", tmp_path), 0, "2 records")
