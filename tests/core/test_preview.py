"""``ddsynth preview`` as a new user meets it: one column, five, forty, and long and odd values,
into a pipe (plain lines) and on a terminal (a pty, read through a terminal emulator)."""

from __future__ import annotations

import sys

import pytest

from tests import cli_configs
from tests.support import run_dd
from tests.terminal import run_in_terminal

SUMMARY = "nothing was written (ddsynth generate writes a dataset)."


def on_terminal(*args: object):
    return run_in_terminal([sys.executable, "-m", "dd_core", *map(str, args)], columns=100)


def test_one_column_in_a_pipe_and_on_a_terminal(tmp_path):
    """Regression: with rich 15 a config whose columns fit the terminal's width crashed with
    "internal error ... 'Text' object has no attribute '_index'" (exit 70), in a pipe too."""
    config = cli_configs.one_column(tmp_path)
    piped = run_dd("preview", config, "-n", 3)
    assert piped.returncode == 0, piped.stderr
    lines = piped.stdout.splitlines()
    assert lines[0] == "record 1 of 3" and lines[1].split() in (["colour", "red"], ["colour", "green"])
    assert lines[-1].startswith("Previewed 3 record(s) of 1 column(s)") and lines[-1].endswith(SUMMARY)
    shown = on_terminal("preview", config, "-n", 3)
    assert shown.returncode == 0, shown.text
    assert "colour" in shown.lines[1]  # the header of the one table
    assert sum(("red" in line or "green" in line) for line in shown.lines) == 3
    assert shown.last_line.startswith("Previewed 3 record(s)") and "Traceback" not in shown.text


def test_five_columns_make_one_table_on_a_terminal_and_blocks_in_a_pipe(tmp_path):
    config = cli_configs.five_columns(tmp_path)
    shown = on_terminal("preview", config, "-n", 4)
    assert shown.returncode == 0, shown.text
    header = shown.lines[1]
    assert all(name in header for name in ("region", "score", "active", "visits", "label"))
    rows = [line for line in shown.lines if "north" in line or "south" in line]
    assert len(rows) == 4 and all(line.count("│") == 6 for line in rows)  # one row per record, five cells each
    piped = run_dd("preview", config, "-n", 4)
    assert piped.returncode == 0 and piped.stdout.count("record ") == 4 and "  label   " in piped.stdout


def test_forty_columns_show_one_block_per_record(tmp_path):
    config = cli_configs.forty_columns(tmp_path)
    shown = on_terminal("preview", config, "-n", 2)
    assert shown.returncode == 0, shown.text
    assert [line.strip() for line in shown.lines if line.startswith("record ")] == ["record 1 of 2", "record 2 of 2"]
    names = [f"c{i:02d}" for i in range(32)] + [f"e{i:02d}" for i in range(8)]
    for name in names:
        assert sum(line.startswith(f"│ {name} ") for line in shown.lines) == 2, name
    assert max(len(line) for line in shown.lines[:-1]) <= 100  # laid out for the terminal's width (the summary wraps)
    piped = run_dd("preview", config, "-n", 2)
    assert [line.split()[0] for line in piped.stdout.splitlines() if line.startswith("  ")] == names * 2


@pytest.mark.parametrize("where", ["pipe", "terminal"])
def test_long_and_odd_values_are_shown_literally_and_cut(tmp_path, where):
    config = cli_configs.odd_values(tmp_path)
    if where == "pipe":
        run = run_dd("preview", config, "-n", 2)
        code, text, raw = run.returncode, run.stdout + run.stderr, (run.stdout + run.stderr).encode()
    else:
        run = on_terminal("preview", config, "-n", 2)
        code, text, raw = run.returncode, run.text, run.raw
    assert code == 0, text
    assert "Traceback" not in text
    assert "[bold red]not bold[/]" in text and "[link=http://example.invalid]no" in text  # markup, as written
    assert "before\\x1b[2J\\x1b[31mred" in text.replace("\n", "").replace("│", "").replace(" ", "")
    assert b"\x1b[2J" not in raw and b"\x1b[31mred" not in raw and b"\x07" not in raw  # never acted on
    assert "(2,000 characters)" in text and "0123456789" not in text  # cut, saying how long it was
    assert "漢字かな" in text and "ＦＵＬＬ" in text
    assert '{"a": 1, "tags": ["x", "y"],' in text.replace("\n", " ") or '"tags":' in text
    assert "[1, 2, 3]" in text
    if where == "pipe":
        lines = run.stdout.splitlines()
        first = next(i for i, line in enumerate(lines) if line.startswith("  lines"))
        assert [line.strip() for line in lines[first : first + 4]] == [
            "lines    first line",
            "second line",
            "",
            "fourth line",
        ]
    else:
        assert max(len(line) for line in run.lines[:-1]) <= 100
