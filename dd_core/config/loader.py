"""Load a dataset config from YAML/JSON text, a file, a dict or a config object."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from dd_core.config.base import FieldProblem
from dd_core.config.dataset import DatasetConfig
from dd_core.errors import ConfigIssue, DDConfigError

ConfigSource = DatasetConfig | dict | str | Path


def load_config(source: ConfigSource, *, base_dir: str | Path | None = None) -> DatasetConfig:
    """Return a validated config. Paths ending in .yaml/.yml/.json are read from disk.

    Relative paths inside the config (seed files) start at the config file's folder,
    or at ``base_dir`` for dicts and text.
    """
    if isinstance(source, DatasetConfig):
        return source
    label = None
    if isinstance(source, Path) or (isinstance(source, str) and "\n" not in source and source.endswith((".yaml", ".yml", ".json"))):
        path = Path(source)
        label = str(path)
        if not path.is_file():
            raise DDConfigError(f"config file {path} does not exist")
        base_dir = base_dir or path.resolve().parent
        source = path.read_text(encoding="utf-8")
    data = parse_text(source, label) if isinstance(source, str) else source
    return validate(data, base_dir=base_dir, label=label)


def parse_text(text: str, label: str | None = None) -> Any:
    """YAML (a superset of JSON) to plain data, with the line of any syntax error."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise DDConfigError(f"not valid YAML/JSON{where}: {problem}", label) from exc
    if not isinstance(data, dict):
        raise DDConfigError(f"the top level must be a mapping with 'columns', got {type(data).__name__}", label)
    return data


def validate(data: dict, *, base_dir: str | Path | None = None, label: str | None = None) -> DatasetConfig:
    try:
        return DatasetConfig.model_validate(data, context={"base_dir": str(base_dir or ".")})
    except ValidationError as exc:
        raise DDConfigError(_issues(exc, data), label) from exc
    except DDConfigError as exc:
        raise DDConfigError(exc.issues, label) from exc


def _issues(exc: ValidationError, data: dict) -> list[ConfigIssue]:
    issues = []
    for error in exc.errors():
        loc = list(error["loc"])
        column = None
        if loc[:1] == ["columns"] and len(loc) > 1 and isinstance(loc[1], int):
            column = _column_label(data, loc[1])
            loc = loc[2:]
            if loc and isinstance(loc[0], str) and loc[0] == _column_type(data, error["loc"][1]):
                loc = loc[1:]  # the union tag pydantic adds
        cause = (error.get("ctx") or {}).get("error")
        if isinstance(cause, FieldProblem):
            loc = [*loc, cause.field]
        if error["type"] in ("union_tag_invalid", "union_tag_not_found"):
            loc = [*loc, "type"]
        field = ".".join(str(part) for part in loc) or None
        issues.append(ConfigIssue(_message(error), column, field))
    return issues


def _column_label(data: dict, index: int) -> str:
    try:
        name = data["columns"][index].get("name")
    except (AttributeError, IndexError, KeyError, TypeError):
        name = None
    return str(name) if name else f"#{index + 1}"


def _column_type(data: dict, index: int) -> str | None:
    try:
        return data["columns"][index].get("type")
    except (AttributeError, IndexError, KeyError, TypeError):
        return None


def _message(error: dict) -> str:
    msg = error["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
    if error["type"] == "missing":
        return "is required but missing"
    if error["type"] == "extra_forbidden":
        return f"is not a known field (value {json.dumps(error.get('input'), default=str)}); check its spelling"
    if error["type"] == "union_tag_invalid":
        ctx = error.get("ctx", {})
        return f"unknown column type {ctx.get('tag')!r}; valid types: {ctx.get('expected_tags')}"
    if error["type"] == "union_tag_not_found":
        return "every column needs a 'type' field"
    return msg
