"""What each kind of validator column checks, over a batch of rows: ``(is_valid, reason)`` each.

Libraries do the checking: Python's own parser (``ast``) and, for ``lint``, ruff (one
subprocess per batch); sqlglot for SQL in the named dialect; jsonschema (Draft 2020-12); the
``regex`` module, whose matching takes a timeout; a user's function in a sandbox process
(``callable_sandbox``). Verdicts depend on the values only, never on timing: a value longer
than ``MAX_VALIDATED_CHARS`` is invalid (deterministic), while a limit that only time reveals
(a pattern backtracking past ``render_limits.timeout_s``, ruff or a callable past its timeout)
stops the run with a config error instead of becoming a verdict.
"""

from __future__ import annotations

import ast
import hashlib
import json
import logging
import subprocess
import tempfile
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

from dd_core.config.render_limits import RenderLimits
from dd_core.config.validation_columns import ValidationColumn, load_tokenizer, ruff_binary
from dd_core.engine.callable_sandbox import run_callable
from dd_core.errors import ConfigIssue, DDConfigError

Verdict = tuple[bool, str | None]
#: Characters of one value a validator reads; a longer value is invalid (its reason says so).
MAX_VALIDATED_CHARS = 1_000_000
#: Characters of a reason kept (a parser's message may quote the value).
MAX_REASON_CHARS = 300
#: Seconds ruff may take over one batch.
RUFF_TIMEOUT_S = 120.0


def validate(col: ValidationColumn, rows: list[dict[str, Any]], limits: RenderLimits) -> list[Verdict]:
    """One verdict per row of target values (``rows[i][target]``)."""
    if col.validator == "callable":
        return run_callable(col, rows)
    check = _checker(col, limits)
    verdicts: list[Verdict] = []
    for row in rows:
        verdict: Verdict = (True, None)
        for target in col.target_columns:
            valid, reason = check(row[target])
            if not valid:
                label = f"{target}: " if len(col.target_columns) > 1 else ""
                verdict = (False, _short(label + (reason or "invalid")))
                break
        verdicts.append(verdict)
    if col.validator == "python" and col.lint:
        verdicts = _lint(col, rows, verdicts)
    return verdicts


def _short(text: str) -> str:
    return text if len(text) <= MAX_REASON_CHARS else text[: MAX_REASON_CHARS - 3] + "..."


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True, default=str)
    return str(value)


def _checker(col: ValidationColumn, limits: RenderLimits) -> Callable[[Any], Verdict]:
    kind = col.validator
    if kind == "json_schema":
        return _json_schema_checker(col.json_schema)
    check = {
        "python": _python,
        "sql": lambda text: _sql(text, col.dialect),
        "regex": lambda text: _regex(text, col, limits),
        "length": lambda text: _length(text, col),
    }[kind]

    def checked(value: Any) -> Verdict:
        if value is None:
            return False, "no value"
        text = _as_text(value)
        if len(text) > MAX_VALIDATED_CHARS and (kind != "length" or col.unit == "tokens"):
            return False, f"{len(text):,} characters, more than the {MAX_VALIDATED_CHARS:,} a validator reads"
        return check(text)

    return checked


def _python(text: str) -> Verdict:
    try:
        ast.parse(text)
    except SyntaxError as exc:
        return False, f"SyntaxError on line {exc.lineno}: {exc.msg}"
    except ValueError as exc:  # null bytes
        return False, f"not Python source: {exc}"
    except (RecursionError, MemoryError):
        return False, "nested too deeply for Python's parser"
    return True, None


_STATEMENTS: tuple[type, ...] | None = None


def _statement_types() -> tuple[type, ...]:
    global _STATEMENTS
    if _STATEMENTS is None:
        from sqlglot import exp  # ~100 ms: only configs with SQL validators

        names = ("Query", "DML", "DDL", "Drop", "Alter", "Transaction", "Commit", "Rollback", "Command")
        names += ("Set", "Use", "Describe", "Merge", "Grant", "Pragma")
        _STATEMENTS = tuple(getattr(exp, n) for n in names if hasattr(exp, n))
    return _STATEMENTS


def _sql(text: str, dialect: str) -> Verdict:
    import sqlglot  # ~100 ms: only configs with SQL validators

    logging.getLogger("sqlglot").setLevel(logging.ERROR)  # "falling back to parsing as a Command"
    try:
        statements = [s for s in sqlglot.parse(text, read=dialect) if s is not None]
    except sqlglot.errors.SqlglotError as exc:
        return False, f"{type(exc).__name__}: {' '.join(str(exc).split())}"
    except (RecursionError, MemoryError):
        return False, "nested too deeply for the SQL parser"
    if not statements:
        return False, "no SQL statement"
    for statement in statements:
        if not isinstance(statement, _statement_types()):
            return False, f"not a SQL statement (parsed as {type(statement).__name__}: {statement.sql()[:60]!r})"
    return True, None


def _json_schema_checker(schema: dict[str, Any]) -> Callable[[Any], Verdict]:
    import jsonschema  # ~50 ms: only configs with JSON Schema validators

    validator = jsonschema.Draft202012Validator(schema)

    def check(value: Any) -> Verdict:
        if isinstance(value, str):
            if len(value) > MAX_VALIDATED_CHARS:
                return False, f"{len(value):,} characters, more than the {MAX_VALIDATED_CHARS:,} a validator reads"
            try:
                value = json.loads(value)
            except (ValueError, RecursionError):
                return False, f"not JSON: {value[:60]!r}"
        try:
            error = jsonschema.exceptions.best_match(validator.iter_errors(value))
        except RecursionError:
            return False, "nested too deeply to validate"
        if error is not None:
            return False, f"{error.json_path}: {error.message}"
        return True, None

    return check


@lru_cache(maxsize=64)
def _compiled(pattern: str) -> Any:
    import regex  # only configs with regex validators

    return regex.compile(pattern)


def _regex(text: str, col: ValidationColumn, limits: RenderLimits) -> Verdict:
    compiled = _compiled(col.pattern)
    try:
        found = (compiled.fullmatch if col.full_match else compiled.search)(text, timeout=limits.timeout_s)
    except TimeoutError as exc:
        raise DDConfigError(
            [
                ConfigIssue(
                    f"matching one value took more than {limits.timeout_s:g} s (render_limits.timeout_s); the pattern "
                    "backtracks too much (nested repeats such as (a+)+?): simplify it",
                    col.name,
                    "pattern",
                )
            ]
        ) from exc
    if found:
        return True, None
    return False, f"does not {'match' if col.full_match else 'contain'} /{col.pattern[:60]}/"


def _length(text: str, col: ValidationColumn) -> Verdict:
    if col.unit == "chars":
        size, unit = len(text), "characters"
    elif col.unit == "words":
        size, unit = len(text.split()), "words"
    else:
        size, unit = len(_tokenizer(*col.tokenizer_file).encode(text, add_special_tokens=False).ids), "tokens"
    if col.min is not None and size < col.min:
        return False, f"{size:,} {unit}, fewer than min {col.min:,}"
    if col.max is not None and size > col.max:
        return False, f"{size:,} {unit}, more than max {col.max:,}"
    return True, None


def _lint(col: ValidationColumn, rows: list[dict[str, Any]], verdicts: list[Verdict]) -> list[Verdict]:
    """ruff over every parsed target of the batch at once (a file each); the first finding of a
    row's first failing target is its reason."""
    binary = ruff_binary()
    if binary is None:
        raise DDConfigError([ConfigIssue("linting needs ruff installed (pip install ruff)", col.name, "lint")])
    with tempfile.TemporaryDirectory(prefix="dd-lint-") as folder:
        files = {}
        for i, (row, (valid, _)) in enumerate(zip(rows, verdicts)):
            if not valid:
                continue
            for target in col.target_columns:
                path = Path(folder) / f"r{i}_{col.target_columns.index(target)}.py"
                path.write_text(_as_text(row[target]), encoding="utf-8", errors="surrogatepass")
                files[path.name] = (i, target)
        if not files:
            return verdicts
        command = [binary, "check", "--isolated", "--no-cache", "--exit-zero", "--output-format", "json"]
        command += ["--select", ",".join(col.lint), folder]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=RUFF_TIMEOUT_S, check=False)
        except subprocess.TimeoutExpired as exc:
            raise DDConfigError(
                [ConfigIssue(f"ruff took more than {RUFF_TIMEOUT_S:g} s over one batch", col.name, "lint")]
            ) from exc
        except OSError as exc:
            raise DDConfigError([ConfigIssue(f"ruff could not run: {exc}", col.name, "lint")]) from exc
        try:
            findings = json.loads(done.stdout)
        except ValueError as exc:
            detail = " ".join(done.stderr.split())[:300]
            raise DDConfigError([ConfigIssue(f"ruff failed: {detail}", col.name, "lint")]) from exc
    found: dict[int, tuple[int, str]] = {}
    for finding in sorted(findings, key=lambda f: (f["filename"], f["location"]["row"], f["location"]["column"])):
        i, target = files[Path(finding["filename"]).name]
        rank = col.target_columns.index(target)
        if i not in found or rank < found[i][0]:
            label = f"{target}: " if len(col.target_columns) > 1 else ""
            where = f"line {finding['location']['row']}"
            found[i] = (rank, _short(f"{label}ruff {finding['code']} on {where}: {finding['message']}"))
    return [(False, found[i][1]) if i in found else verdict for i, verdict in enumerate(verdicts)]


@lru_cache(maxsize=8)
def _tokenizer(path: str, sha256: str) -> Any:
    """The tokenizer of a length validator, loaded once per process; the file must still be the
    one the config's fingerprint holds."""
    data = Path(path).read_bytes()
    if hashlib.sha256(data).hexdigest() != sha256:
        raise DDConfigError(f"{path} changed after the config was loaded; its tokens would not match the fingerprint")
    return load_tokenizer(data)
