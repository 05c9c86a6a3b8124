"""Load a dataset config from YAML/JSON text, a file, a dict or a config object."""

from __future__ import annotations

import reprlib
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from dd_core.config.base import FieldProblem
from dd_core.config.dataset import DatasetConfig
from dd_core.config.yaml_safe import load as load_yaml
from dd_core.errors import ConfigIssue, DDConfigError

ConfigSource = DatasetConfig | dict | str | Path
#: A config file larger than this is not a config (it is read whole, then parsed).
MAX_CONFIG_BYTES = 32 * 2**20


def _short_repr() -> reprlib.Repr:
    """A repr that never serialises a huge input (error messages quote at most a few values)."""
    short = reprlib.Repr()
    short.maxlevel, short.maxstring, short.maxother, short.maxlist, short.maxdict, short.maxlong = 3, 80, 80, 8, 8, 40
    return short


_short = _short_repr()


def load_config(source: ConfigSource, *, base_dir: str | Path | None = None) -> DatasetConfig:
    """Return a validated config. Paths ending in .yaml/.yml/.json are read from disk.

    Relative paths inside the config (seed files) start at the config file's folder,
    or at ``base_dir`` for dicts and text. The ``config.json`` of a dataset folder is a
    config too (also in its older form ``{"fingerprint": ..., "config": ...}``).
    """
    if isinstance(source, DatasetConfig):
        return source
    label = None
    if isinstance(source, Path) or (
        isinstance(source, str) and "\n" not in source and source.endswith((".yaml", ".yml", ".json"))
    ):
        path = Path(source)
        label = str(path)
        base_dir = base_dir or path.resolve().parent
        source = read_config_file(path)
    data = parse_text(source, label) if isinstance(source, str) else source
    return validate(unwrap(data), base_dir=base_dir, label=label)


def read_config_file(path: Path) -> str:
    try:
        if path.is_dir():
            raise DDConfigError(f"config path {path} is a directory; expected a YAML or JSON file")
        if not path.exists():
            raise DDConfigError(f"config file {path} does not exist")
        if not path.is_file():
            raise DDConfigError(f"config path {path} is not a regular file; expected a YAML or JSON file")
        size = path.stat().st_size
        if size > MAX_CONFIG_BYTES:
            raise DDConfigError(
                f"config file {path} is {size:,} bytes; a config is at most {MAX_CONFIG_BYTES:,} bytes (is this the right file?)"
            )
        data = path.read_bytes()
    except OSError as exc:
        raise DDConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from exc
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DDConfigError(
            f"config file {path} is not UTF-8 text (byte {data[exc.start]:#04x} at offset {exc.start}); expected a YAML or JSON file"
        ) from exc


def parse_text(text: str, label: str | None = None) -> Any:
    """YAML (a superset of JSON) to plain data, with the line of any syntax error."""
    try:
        data = load_yaml(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise DDConfigError(f"not valid YAML/JSON{where}: {problem}", label) from exc
    except RecursionError as exc:
        raise DDConfigError("the document nests too deeply to be read", label) from exc
    if not isinstance(data, dict):
        raise DDConfigError(f"the top level must be a mapping with 'columns', got {type(data).__name__}", label)
    return data


def unwrap(data: Any) -> Any:
    """The config inside the older ``config.json`` form ``{"fingerprint": ..., "config": {...}}``."""
    if isinstance(data, dict) and set(data) == {"fingerprint", "config"} and isinstance(data["config"], dict):
        return data["config"]
    return data


def validate(data: dict, *, base_dir: str | Path | None = None, label: str | None = None) -> DatasetConfig:
    try:
        return DatasetConfig.model_validate(data, context={"base_dir": str(base_dir or ".")})
    except ValidationError as exc:
        raise DDConfigError(_issues(exc, data), label) from exc
    except DDConfigError as exc:
        raise DDConfigError(exc.issues, label) from exc
    except RecursionError as exc:
        raise DDConfigError("the config nests too deeply to be validated", label) from exc


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
    if name is None or name == "":
        return f"#{index + 1}"
    return name[:80] if isinstance(name, str) else _short.repr(name)


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
        return f"is not a known field (value {_short.repr(error.get('input'))}); check its spelling"
    if error["type"] == "union_tag_invalid":
        ctx = error.get("ctx", {})
        return f"unknown column type {_short.repr(ctx.get('tag'))}; valid types: {ctx.get('expected_tags')}"
    if error["type"] == "union_tag_not_found":
        return "every column needs a 'type' field"
    if error["type"] in ("finite_number", "float_parsing") and isinstance(error.get("input"), (float, str)):
        return f"must be a finite number, got {_short.repr(error.get('input'))}"
    return msg
