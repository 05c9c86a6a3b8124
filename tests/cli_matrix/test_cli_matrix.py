"""The CLI matrix: every ``ddsynth`` command (read from the typer app: a new command joins by
existing, and fails here until it has a recipe) x every config (``examples/`` and three of our
own) x the server's state for configs with LLM columns (the test server up, nothing listening)
x where the output goes (a pipe, a pseudo-terminal). Each cell runs the real command (a pipe's
cells in this process, through typer's runner and the log handler ``ddsynth``
installs for a pipe; a terminal's on a real pty) and checks what its user meets: the documented exit code (never 70), no traceback, one
message on failure, and a last line that names the result or the fix; a failure before work
(exit 7) leaves nothing written.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import huggingface_hub.constants as hub_constants
import pytest
import typer.main
from typer.testing import CliRunner

from dd_core.errors import INTERNAL_ERROR_EXIT
from dd_core.interface.cli import app
from dd_core.redaction import redact_handler
from tests.cli_matrix.conftest import NUM_RECORDS, Matrix, config_states, fresh_copy
from tests.hostile.harness import snapshot
from tests.terminal import run_in_terminal

COMMANDS = sorted(typer.main.get_command(app).commands)
OUTPUTS = ("pipe", "terminal")
PREVIEW_RECORDS = 3


@dataclass
class Cell:
    """One cell's inputs: its config and datasets (fresh copies), and a folder of its own."""

    matrix: Matrix
    name: str
    state: str
    folder: Path

    @property
    def config(self) -> Path:
        return self.matrix.prepared(self.name, self.state).config

    def finished(self) -> Path:
        return fresh_copy(self.matrix.prepared(self.name, self.state).finished, self.folder)

    def interrupted(self) -> Path:
        return fresh_copy(self.matrix.prepared(self.name, self.state).interrupted, self.folder)


@dataclass(frozen=True)
class Recipe:
    """A command line for a cell, and what a user must then see."""

    variant: str
    args: Callable[[Cell], list[object]]
    #: Exit code and a pattern the last line matches, when the models answer.
    code: int
    last_line: str
    #: Whether the command calls the models (then, with nothing listening: exit 7 and the fix).
    calls_models: bool = False


RECIPES: dict[str, list[Recipe]] = {
    "validate": [Recipe("", lambda c: ["validate", c.config], 0, r"^config_hash: sha256:[0-9a-f]{64}$")],
    "preview": [
        Recipe(
            "",
            lambda c: ["preview", c.config, "-n", PREVIEW_RECORDS],
            0,
            rf"^Previewed {PREVIEW_RECORDS} record\(s\) of \d+ column\(s\) from .+; nothing was written",
            calls_models=True,
        )
    ],
    "generate": [
        Recipe(
            "",
            lambda c: ["generate", c.config, "-n", NUM_RECORDS, "--buffer-size", 2, "--artifact-path", c.folder / "a"],
            0,
            r"^Dataset: .+/a/[^/]+$",
            calls_models=True,
        )
    ],
    "resume": [
        Recipe("interrupted", lambda c: ["resume", c.interrupted()], 0, r"^Dataset: .+/interrupted$", True),
        Recipe("finished", lambda c: ["resume", c.finished()], 0, r"^Dataset: .+/finished$"),
    ],
    "status": [
        Recipe(
            "interrupted",
            lambda c: ["status", c.interrupted(), "--config", c.config],
            0,
            r"^would resume: yes: 1 row group\(s\) reused, 1 to generate$",
        ),
        Recipe(
            "finished",
            lambda c: ["status", c.finished(), "--config", c.config],
            0,
            r"^would resume: yes: already complete, nothing to generate$",
        ),
    ],
    "export": [
        Recipe(
            "finished",
            lambda c: ["export", c.finished(), "-o", c.folder / "out.jsonl"],
            0,
            rf"^Wrote {NUM_RECORDS} records to .+/out\.jsonl$",
        ),
        Recipe(
            "interrupted",
            lambda c: ["export", c.interrupted(), "-o", c.folder / "out.jsonl"],
            2,
            r"^Error: .+ is not finished yet \(1 of 2 row groups\); continue it with: ddsynth resume .+/interrupted$",
        ),
    ],
    "push": [
        Recipe(
            "finished",
            lambda c: ["push", c.finished(), "--repo", f"dd-user/{c.folder.name[-60:]}"],
            0,
            r"^Pushed \d+ parquet file\(s\) and the dataset card to dd-user/.+ \(main\): http.+$",
        ),
        Recipe(
            "interrupted",
            lambda c: ["push", c.interrupted(), "--repo", "dd-user/unfinished"],
            2,
            r"^Error: .+ is not finished yet \(1 of 2 row groups\); continue it with: ddsynth resume .+/interrupted$",
        ),
    ],
}
_MISSING = Recipe("no recipe", lambda c: [], 0, "")


def cells() -> list:
    params = []
    for command in COMMANDS:
        for recipe in RECIPES.get(command, [_MISSING]):
            for name, state in config_states():
                for output in OUTPUTS:
                    cell_id = "-".join(
                        filter(None, [command, recipe.variant, name, state if state != "-" else "", output])
                    )
                    params.append(pytest.param(command, recipe, name, state, output, id=cell_id))
    return params


@pytest.mark.parametrize(("command", "recipe", "name", "state", "output"), cells())
def test_cell(matrix, tmp_path, monkeypatch, command, recipe, name, state, output):
    if recipe is _MISSING:
        pytest.fail(f"command {command!r} has no recipe in the CLI matrix: add its command lines to RECIPES")
    if command == "push":  # the local Hub, for this process and the terminal's
        for key, value in matrix.hub_env().items():
            monkeypatch.setenv(key, value)
        monkeypatch.setattr(hub_constants, "HF_HUB_DISABLE_XET", True)  # read when huggingface_hub was imported
    cell = Cell(matrix, name, state, tmp_path)
    args = [str(a) for a in recipe.args(cell)]
    down = state == "down" and recipe.calls_models
    before = snapshot(tmp_path)
    if output == "pipe":
        code, stdout, stderr = in_a_pipe(args)
        text = stdout + stderr
        last = next((line for line in reversed((stderr if code else stdout).splitlines()) if line.strip()), "")
        if code:
            assert [line.startswith("Error:") for line in stderr.splitlines()].count(True) == 1, text
    else:
        argv = [sys.executable, "-m", "dd_core", *args]
        shown = run_in_terminal(argv, columns=100, rows=40, cwd=tmp_path, timeout=300)
        code, text, last = shown.returncode, shown.text, shown.last_line
    report = f"ddsynth {' '.join(args)}\nexit {code}\n{text[-4000:]}"
    assert code != INTERNAL_ERROR_EXIT, report
    assert "Traceback" not in text, report
    if down:
        assert code == 7, report
        assert last.startswith("Error: model") and f"http://127.0.0.1:{matrix.dead_port}" in last, report
        assert f"python -m dd_core.testing.llm_server --port {matrix.dead_port}" in last, report
        assert snapshot(tmp_path) == before, "a check that failed before any work changed files"
    else:
        assert code == recipe.code, report
        assert re.search(recipe.last_line, last.strip()), f"last line {last.strip()!r}\n{report}"


class _StderrNow(logging.StreamHandler):
    """``ddsynth``'s log handler for a pipe (``logging.StreamHandler(sys.stderr)``), writing to
    whatever ``sys.stderr`` is when a record comes (the runner's while a command runs)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def in_a_pipe(args: list[str]) -> tuple[int, str, str]:
    """``ddsynth ARGS`` in this process with its output in pipes: exit code, stdout, stderr."""
    handler = _StderrNow()
    handler.setFormatter(logging.Formatter("%(message)s"))
    redact_handler(handler)
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        result = CliRunner().invoke(app, args)
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
    stderr = result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        stderr += f"\nTraceback: {result.exception!r}"  # what escaped the command's own handling
    return result.exit_code, result.stdout, stderr
