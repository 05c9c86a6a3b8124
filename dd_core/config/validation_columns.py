"""Validator columns: ``{is_valid, reason}`` per row from other columns, without an LLM call.

One model for every kind (``validator:``), each kind with its own fields; a field of another
kind is refused by name, so a typo cannot silently turn a check off.
"""

from __future__ import annotations

import hashlib
import re
import shutil
from functools import cache
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, PrivateAttr, ValidationInfo, field_validator, model_validator

from dd_core.config.base import FieldProblem
from dd_core.config.columns import ColumnConfig

ValidatorKind = Literal["python", "sql", "json_schema", "regex", "length", "callable"]
#: The fields each kind reads (beyond ``validator`` and ``target_columns``), and those it requires.
KIND_FIELDS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "python": (frozenset({"lint"}), frozenset()),
    "sql": (frozenset({"dialect"}), frozenset({"dialect"})),
    "json_schema": (frozenset({"json_schema"}), frozenset({"json_schema"})),
    "regex": (frozenset({"pattern", "full_match"}), frozenset({"pattern"})),
    "length": (frozenset({"min", "max", "unit", "tokenizer"}), frozenset()),
    "callable": (frozenset({"function", "timeout_s"}), frozenset({"function"})),
}
_KIND_SPECIFIC = frozenset().union(*(fields for fields, _ in KIND_FIELDS.values()))
_FUNCTION = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*$")
_RULE_CODE = re.compile(r"^[A-Z]+[0-9]*$")


class ValidationColumn(ColumnConfig):
    """Checks ``target_columns`` of each row; the column holds ``{is_valid: bool, reason: str | null}``.

    A row is valid when every target is; the reason of an invalid row names the first target
    that failed and why. Validators are deterministic and cost no LLM call.
    """

    type: Literal["validation"]
    validator: ValidatorKind
    target_columns: list[str] = Field(min_length=1)
    #: python: ruff rule codes or prefixes to lint with (e.g. ["F", "E9"]); none: parse only.
    lint: list[str] | None = None
    #: sql: the dialect sqlglot parses with (e.g. postgres, duckdb, bigquery).
    dialect: str | None = None
    #: json_schema: the JSON Schema each target must match (text targets are parsed as JSON first).
    json_schema: dict[str, Any] | None = None
    #: regex: a pattern the target must contain (or match whole with ``full_match``).
    pattern: str | None = None
    full_match: bool = False
    #: length: bounds on the target's length, in characters, whitespace-separated words, or tokens
    #: of ``tokenizer``.
    min: int | None = Field(default=None, ge=0)
    max: int | None = Field(default=None, ge=0)
    unit: Literal["chars", "words", "tokens"] = "chars"
    #: length with unit tokens: a Hugging Face ``tokenizer.json`` (the file a model repo ships;
    #: relative paths start at the config file's folder). Its content enters the fingerprint.
    tokenizer: str | None = None
    #: callable: ``module:function`` called with a batch of rows (see ``dd_core.engine.validators``).
    function: str | None = None
    #: callable: seconds one batch may take before the validator fails.
    timeout_s: float = Field(default=60.0, gt=0, le=3600)

    fingerprint_exclude = frozenset({"description", "timeout_s", "tokenizer"})
    #: The tokenizer file, resolved, and its sha256 (what the fingerprint holds instead of the path).
    _tokenizer_file: tuple[str, str] | None = PrivateAttr(default=None)

    @field_validator("target_columns")
    @classmethod
    def _unique(cls, targets: list[str]) -> list[str]:
        if len(set(targets)) != len(targets):
            raise ValueError(f"names a column twice: {targets}")
        return targets

    @field_validator("lint")
    @classmethod
    def _rule_codes(cls, codes: list[str] | None) -> list[str] | None:
        bad = [c for c in codes or [] if not _RULE_CODE.match(c)]
        if bad:
            raise ValueError(f"{bad} are not ruff rule codes or prefixes (such as F, E9, F401)")
        return codes

    @field_validator("function")
    @classmethod
    def _function(cls, function: str | None) -> str | None:
        if function is not None and not _FUNCTION.match(function):
            raise ValueError(f"{function[:80]!r} is not 'module:function' (e.g. my_checks:valid_tickets)")
        return function

    @model_validator(mode="after")
    def _kind_fields(self) -> ValidationColumn:
        allowed, required = KIND_FIELDS[self.validator]
        for name in sorted((self.model_fields_set & _KIND_SPECIFIC) - allowed):
            if getattr(self, name) == type(self).model_fields[name].default:
                continue  # written out by a dump of the column (its default): harmless
            raise FieldProblem(
                name, f"is not a field of a {self.validator} validator (its fields: {', '.join(sorted(allowed))})"
            )
        for name in sorted(required - self.model_fields_set):
            raise FieldProblem(name, f"a {self.validator} validator needs '{name}'")
        if self.validator == "length":
            self._length_bounds()
        _check_kind(self)
        return self

    def _length_bounds(self) -> None:
        if self.min is None and self.max is None:
            raise FieldProblem("max", "a length validator needs 'min', 'max' or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise FieldProblem("max", f"min ({self.min}) must not exceed max ({self.max})")
        if self.unit == "tokens" and self.tokenizer is None:
            raise FieldProblem("tokenizer", "unit: tokens needs 'tokenizer': the path of a model's tokenizer.json")
        if self.tokenizer is not None and self.unit != "tokens":
            raise FieldProblem("tokenizer", f"is read only with unit: tokens (this validator counts {self.unit})")

    @model_validator(mode="after")
    def _read_tokenizer(self, info: ValidationInfo) -> ValidationColumn:
        if self.validator == "length" and self.tokenizer is not None:
            self._tokenizer_file = read_tokenizer(self.tokenizer, Path((info.context or {}).get("base_dir", ".")))
        return self

    @property
    def tokenizer_file(self) -> tuple[str, str] | None:
        """(absolute path, sha256) of the tokenizer file; the path is what a dataset folder's
        config.json records."""
        return self._tokenizer_file

    def dependencies(self) -> dict[str, set[str]]:
        return {"target_columns": set(self.target_columns)}

    def fingerprint_view(self) -> dict[str, Any]:
        """Only this kind's fields: another kind's defaults change nothing."""
        allowed, _ = KIND_FIELDS[self.validator]
        view = super().fingerprint_view()
        view = {k: v for k, v in view.items() if k not in _KIND_SPECIFIC or k in allowed}
        if self._tokenizer_file is not None:
            view["tokenizer_sha256"] = self._tokenizer_file[1]
        return view


#: A tokenizer.json larger than this is refused (the largest models' files are tens of MB).
MAX_TOKENIZER_BYTES = 256 * 1024 * 1024


def read_tokenizer(path: str, base: Path) -> tuple[str, str]:
    """(absolute path, sha256) of a tokenizer file the ``tokenizers`` library reads, or the problem."""
    location = Path(path).expanduser()
    location = (location if location.is_absolute() else base / location).resolve()
    try:
        size = location.stat().st_size
        if not location.is_file():
            raise FieldProblem("tokenizer", f"{location} is not a file; expected a model's tokenizer.json")
        if size > MAX_TOKENIZER_BYTES:
            raise FieldProblem("tokenizer", f"{location} has {size:,} bytes, more than a tokenizer.json has")
        data = location.read_bytes()
    except FileNotFoundError as exc:
        raise FieldProblem(
            "tokenizer", f"{location} does not exist (relative paths start at the config file's folder)"
        ) from exc
    except OSError as exc:
        raise FieldProblem("tokenizer", f"cannot read {location}: {exc.strerror or exc}") from exc
    load_tokenizer(data)
    return str(location), hashlib.sha256(data).hexdigest()


def load_tokenizer(data: bytes) -> Any:
    """A ``tokenizers.Tokenizer`` from a tokenizer.json's bytes, or the problem as a FieldProblem."""
    from tokenizers import Tokenizer  # only configs counting tokens load it

    try:
        return Tokenizer.from_str(data.decode("utf-8"))
    except Exception as exc:  # the library raises a bare Exception; UnicodeDecodeError for a binary file
        reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise FieldProblem("tokenizer", f"is not a tokenizer.json the tokenizers library reads ({reason})") from exc


def _check_kind(col: ValidationColumn) -> None:
    """What can be checked before any row: the schema, the pattern, the dialect."""
    if col.validator == "json_schema":
        import jsonschema  # ~50 ms to import: only configs that use it pay for it

        try:
            jsonschema.Draft202012Validator.check_schema(col.json_schema)
        except jsonschema.SchemaError as exc:
            raise FieldProblem("json_schema", f"not a valid JSON Schema: {exc.message}") from exc
    elif col.validator == "regex":
        import regex  # only configs with regex validators load it

        try:
            regex.compile(col.pattern)
        except regex.error as exc:
            raise FieldProblem("pattern", f"not a valid regular expression: {exc}") from exc
    elif col.validator == "sql":
        from sqlglot.dialects.dialect import Dialect  # ~100 ms: only configs with SQL validators

        try:
            Dialect.get_or_raise(col.dialect)
        except ValueError as exc:
            raise FieldProblem("dialect", f"sqlglot knows no SQL dialect {col.dialect!r}: {exc}") from exc
    elif col.validator == "python" and col.lint:
        if ruff_binary() is None:
            raise FieldProblem("lint", "linting needs ruff installed (pip install ruff); or leave 'lint' out")


@cache
def ruff_binary() -> str | None:
    """ruff's executable: the one its Python package installed, else one on the PATH."""
    try:
        from ruff.__main__ import find_ruff_bin  # ruff is optional: looked up only for `lint`
    except ImportError:
        return shutil.which("ruff")
    try:
        return find_ruff_bin()
    except FileNotFoundError:
        return shutil.which("ruff")
