"""What every hostile case checks, whatever it feeds dd.

A case runs the real ``ddsynth`` app (in-process through typer's CliRunner, or as a subprocess where
the process boundary matters) and asserts what a user would see: the documented exit code, one
message that names the problem, no traceback, no secret in any output or file, and (where nothing
should change) a folder that is byte-identical afterwards.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from typer.testing import CliRunner

from dd_core.interface.cli import app
from dd_core.without_pandas import allow_pandas

#: An API key the LLM cases configure; it must never appear in any output or file.
SECRET = "sk-dd-hostile-0123456789abcdefSECRET"
SECRET_FORMS = (SECRET, json.dumps(SECRET)[1:-1])


@dataclass
class Outcome:
    code: int
    stdout: str
    stderr: str
    exception: BaseException | None

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def invoke(*args: object, env: dict | None = None) -> Outcome:
    """``ddsynth ARGS`` in this process, through the real app and its error handling. The command's
    process would end there: what it set for itself (refusing pandas) does not outlive it."""
    result = CliRunner().invoke(app, [str(a) for a in args], env=env)
    allow_pandas()
    return Outcome(result.exit_code, result.stdout, result.stderr, result.exception)


def check(outcome: Outcome, code: int, *words: str) -> None:
    """The exit code, every word in the output, no traceback, no secret; an error is one message."""
    shown = f"exit {outcome.code}\n--- stdout\n{outcome.stdout[-3000:]}\n--- stderr\n{outcome.stderr[-3000:]}"
    assert outcome.code == code, shown
    assert outcome.exception is None or isinstance(outcome.exception, SystemExit), f"{outcome.exception!r}\n{shown}"
    assert "Traceback" not in outcome.output, shown
    for word in words:
        assert word in outcome.output, f"{word!r} missing\n{shown}"
    if code in (2, 3, 4, 5, 6, 7):
        assert [line.startswith("Error:") for line in outcome.stderr.splitlines()].count(True) == 1, shown
    assert_no_secret(outcome.output)


def assert_no_secret(text: str | bytes, where: str = "output") -> None:
    data = text.encode() if isinstance(text, str) else text
    for form in SECRET_FORMS:
        assert form.encode() not in data, f"the API key is in {where}"


def assert_no_secret_in_files(root: Path) -> None:
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            assert_no_secret(path.read_bytes(), str(path))


def snapshot(root: Path) -> dict[str, str]:
    """Every entry under ``root``: kind and content hash (files), link target (symlinks)."""
    state = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            rel = str(path.relative_to(root))
            mode = os.lstat(path).st_mode
            if stat.S_ISLNK(mode):
                state[rel] = f"link->{os.readlink(path)}"
            elif stat.S_ISREG(mode):
                state[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
            elif stat.S_ISDIR(mode):
                state[rel] = "dir"
            else:
                state[rel] = "special"
    return state
