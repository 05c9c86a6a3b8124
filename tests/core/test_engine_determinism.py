"""A row group is a pure function of (config, index): alone, in another process, in any order."""

from __future__ import annotations

import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dd_core import generate, generate_row_group, load_config
from dd_core.storage.row_group_files import strip_dd_metadata
from tests.support import EXAMPLES, ROOT

CUSTOMERS = EXAMPLES / "customers.yaml"
ORDERS = EXAMPLES / "orders_from_seed.yaml"


def _file_table(path):
    return strip_dd_metadata(pq.read_table(path))


def test_row_group_alone_equals_row_group_of_a_full_run(tmp_path):
    result = generate(CUSTOMERS, 5000, buffer_size=1000, artifact_path=tmp_path)
    for k in (0, 3, 4):
        alone = generate_row_group(load_config(CUSTOMERS), k, 1000, buffer_size=1000)
        assert alone.equals(_file_table(result.path / "parquet-files" / f"batch_{k:05d}.parquet"))


def test_row_group_made_in_another_process_is_identical(tmp_path):
    result = generate(ORDERS, 1200, buffer_size=400, artifact_path=tmp_path)
    out = tmp_path / "rg2.parquet"
    code = (
        "import pyarrow.parquet as pq, sys; from dd_core import generate_row_group;"
        f"pq.write_table(generate_row_group({str(ORDERS)!r}, 2, 400, buffer_size=400), {str(out)!r})"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
    assert pq.read_table(out).equals(_file_table(result.path / "parquet-files" / "batch_00002.parquet"))


def test_order_of_generation_does_not_matter():
    config = load_config(CUSTOMERS)
    forward = [generate_row_group(config, k, 300) for k in range(4)]
    backward = [generate_row_group(config, k, 300) for k in reversed(range(4))][::-1]
    assert all(a.equals(b) for a, b in zip(forward, backward))


def test_two_runs_write_byte_identical_files(tmp_path):
    one = generate(CUSTOMERS, 2500, buffer_size=1000, artifact_path=tmp_path / "one")
    two = generate(CUSTOMERS, 2500, buffer_size=1000, artifact_path=tmp_path / "two")
    for k in range(3):
        name = f"parquet-files/batch_{k:05d}.parquet"
        assert (one.path / name).read_bytes() == (two.path / name).read_bytes()


def test_fewer_rows_give_a_prefix_of_the_same_row_group():
    for config in (CUSTOMERS, ORDERS):
        full = generate_row_group(config, 5, 500, buffer_size=500)
        part = generate_row_group(config, 5, 137, buffer_size=500)
        assert full.slice(0, 137).equals(part)


def test_row_groups_and_seeds_differ():
    config = load_config(CUSTOMERS)
    a = generate_row_group(config, 0, 200)
    b = generate_row_group(config, 1, 200)
    c = generate_row_group(config.model_copy(update={"seed": 7}), 0, 200)
    for other in (b, c):
        assert a.column("record_id").to_pylist() != other.column("record_id").to_pylist()
        assert a.column("score").to_pylist() != other.column("score").to_pylist()


def test_editing_one_column_leaves_the_others_unchanged():
    base = load_config(CUSTOMERS).model_dump(mode="json")
    base["columns"][2]["high"] = 50  # score
    edited = generate_row_group(base, 0, 300)
    original = generate_row_group(CUSTOMERS, 0, 300)
    for name in ("region", "city", "record_id", "person", "height_cm"):
        assert edited.column(name).equals(original.column(name))
    assert not edited.column("score").equals(original.column("score"))


@pytest.mark.parametrize(
    "source",
    [
        "plain text, no tags",
        "Answer: {{ q }}\n",
        "{{ p.first_name }} {{ p.last_name }} ({{ region }}) score={{ score }} ok={{ flag }} none={{ nothing }}",
        "{{ p.items }} {{ p.keys }}",  # dict methods: Jinja's answer, not p["items"]
        "{{ p.missing }}",  # undefined: Jinja's error
        "{{ nested.inner }}",
        "{{ q | upper }} {% if flag %}yes{% endif %}",  # not spliceable: Jinja itself
        "line\r\nwith crlf {{ q }}\n\n",
    ],
)
def test_spliced_templates_render_exactly_what_jinja_renders(source):
    from dd_core import DDConfigError
    from dd_core.config.render_limits import DEFAULT_LIMITS
    from dd_core.engine.expressions import compile_renderer, render_rows

    contexts = [
        {"q": "why?", "p": {"first_name": "Ada", "last_name": "L", "items": "shadowed", "keys": 3}, "region": "north",
         "score": 73.5, "flag": True, "nothing": None, "nested": {"inner": {"a": [1, 2.0]}}},
        {"q": "✓ \\n", "p": "not a dict", "region": 0, "score": 1e16, "flag": False, "nothing": [], "nested": {"inner": None}},
    ]  # fmt: skip
    render = compile_renderer(source, "c", "expr", DEFAULT_LIMITS)
    for context in contexts:
        try:
            expected = render_rows(source, "c", "expr", [context], DEFAULT_LIMITS)[0]
        except DDConfigError as exc:
            with pytest.raises(DDConfigError) as info:
                render(context)
            assert str(info.value) == str(exc)
        else:
            assert render(context) == expected


def _context_with_columns(render_limits=None):
    from dd_core.config.render_limits import DEFAULT_LIMITS
    from dd_core.engine.context import RowGroupContext

    people = [{"first_name": "Ada", "last_name": "L", "items": "shadowed"}, {"first_name": "✓ \\n", "last_name": None, "items": "x"},
              {"first_name": "Bo", "last_name": "", "items": ""}, {"first_name": "Cy", "last_name": "Q", "items": "y"}]  # fmt: skip
    ctx = RowGroupContext(0, 0, 3, 0, render_limits or DEFAULT_LIMITS)
    ctx.columns.update(
        p=pa.array(people[:3]),
        sliced=pa.array(people).slice(1, 3),  # a struct with an offset: its fields must be read from row 1 on
        holes=pa.array([people[0], None, people[2]]),  # a null struct row: Jinja's own error
        q=pa.array(["why?", None, "{{ not a tag }}"]),
        n=pa.array([1, None, -7]),
        score=pa.array([73.5, 1e16, float("nan")]),
        flag=pa.array([True, False, None]),
        tags=pa.array([["a"], [], None]),
    )
    return ctx


@pytest.mark.parametrize(
    "source",
    [
        "plain text, no tags",
        "{{ p.first_name }} {{ p.last_name }}: {{ q }} n={{ n }} score={{ score }} flag={{ flag }} tags={{ tags }} {{ p }}",
        "{{ sliced.first_name }}/{{ sliced.last_name }}",
        "{{ holes.first_name }}",
        "{{ p.missing }}",
        "{{ q | upper }}",
    ],
)
@pytest.mark.parametrize("max_output_chars", [1_000_000, 12])
def test_expression_columns_hold_what_jinja_renders_row_by_row(source, max_output_chars):
    """The whole-column splice gives the cells (or the error) that rendering each row with
    Jinja gives."""
    from dd_core import DDConfigError
    from dd_core.config.columns import ExpressionColumn
    from dd_core.config.render_limits import RenderLimits
    from dd_core.engine.expressions import expression, render_rows, row_contexts

    limits = RenderLimits(max_output_chars=max_output_chars)
    col = ExpressionColumn(name="c", type="expression", expr=source)
    try:
        contexts = row_contexts(
            col.dependencies()["expr"] & set(_context_with_columns().columns), _context_with_columns()
        )
        expected = [render_rows(source, "c", "expr", [context], limits)[0] for context in contexts]
    except DDConfigError as exc:
        with pytest.raises(DDConfigError) as info:
            expression(col, _context_with_columns(limits))
        assert str(info.value) == str(exc)
    else:
        assert expression(col, _context_with_columns(limits)).to_pylist() == expected


@pytest.mark.parametrize("fmt", ["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S", "%d/%m/%Y %H:%M"])
def test_datetime_formats_are_what_strftime_writes(fmt):
    import datetime as dt

    import numpy as np

    from dd_core.engine.samplers import formatted

    edges = [
        "1000-01-01T00:00:00",
        "2020-02-29T23:59:59",
        "9999-12-31T23:59:59",
        "1970-01-01T00:00:01",
        "1969-12-31T23:59:59",
    ]
    random = np.datetime64("1900-01-01", "s") + np.random.default_rng(0).integers(0, 200 * 365 * 86400, 500).astype(
        "timedelta64[s]"
    )
    for stamps in (
        np.array(edges, dtype="datetime64[s]"),
        random,
        np.array(["0999-12-31T23:59:59", "2000-01-01T00:00:00"], dtype="datetime64[s]"),
    ):
        assert formatted(stamps, fmt).tolist() == [d.strftime(fmt) for d in stamps.astype(dt.datetime)]
