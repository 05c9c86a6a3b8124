"""What each LLM column type asks for, how its reply is checked, and its Arrow type."""

from __future__ import annotations

import json
import re
from functools import lru_cache
from typing import Any

import jsonschema
import pyarrow as pa

from dd_core.config.llm_columns import LLMCodeColumn, LLMColumn, LLMJudgeColumn, LLMStructuredColumn


class InvalidReply(ValueError):
    """The model answered, but not in the shape the column needs (re-asked within a budget)."""


def judge_schema(col: LLMJudgeColumn) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            s.name: {
                "type": "object",
                "properties": {"score": {"enum": s.values}, "reason": {"type": "string"}},
                "required": ["score", "reason"],
                "additionalProperties": False,
            }
            for s in col.scores
        },
        "required": [s.name for s in col.scores],
        "additionalProperties": False,
    }


def output_schema(col: LLMColumn) -> dict[str, Any] | None:
    if isinstance(col, LLMStructuredColumn):
        return col.output_schema
    if isinstance(col, LLMJudgeColumn):
        return judge_schema(col)
    return None


def instructions(col: LLMColumn) -> str | None:
    """Text appended to the system prompt so any model knows the expected shape."""
    if isinstance(col, LLMCodeColumn):
        return f"Reply with exactly one fenced code block: ```{col.language} ... ```"
    if isinstance(col, LLMJudgeColumn):
        lines = [
            'Score the input on each criterion below. Reply with JSON: for each criterion an object {"score": <one allowed value>, "reason": <one sentence>}.'
        ]
        for s in col.scores:
            options = s.options if isinstance(s.options, dict) else {v: "" for v in s.options}
            allowed = "; ".join(f"{v}{f' = {d}' if d else ''}" for v, d in options.items())
            lines.append(f"- {s.name}{f': {s.description}' if s.description else ''} (allowed: {allowed})")
        return "\n".join(lines)
    if isinstance(col, LLMStructuredColumn):
        return "Reply with a JSON object that follows the given JSON schema, and nothing else."
    return None


def response_format(col: LLMColumn) -> dict[str, Any] | None:
    schema = output_schema(col)
    if schema is None:
        return None
    return {"type": "json_schema", "json_schema": {"name": col.name, "schema": schema, "strict": True}}


def reply_is_value(col: LLMColumn) -> bool:
    """The reply's text is the cell's value as it is: ``parse_reply`` would return it unchanged."""
    return not isinstance(col, LLMCodeColumn) and output_schema(col) is None


def parse_reply(col: LLMColumn, content: str) -> Any:
    if isinstance(col, LLMCodeColumn):
        return _code_block(content, col.language)
    schema = output_schema(col)
    if schema is None:
        return content
    try:
        value = json.loads(_strip_fence(content))
        error = jsonschema.exceptions.best_match(_validator(json.dumps(schema, sort_keys=True)).iter_errors(value))
        if error is not None:
            raise InvalidReply(f"reply does not match the schema: {error.message[:300]}")
        return to_arrow_value(schema, value)
    except RecursionError as exc:
        raise InvalidReply("reply is JSON nested too deeply to read") from exc
    except InvalidReply:
        raise
    except ValueError as exc:
        raise InvalidReply(f"reply is not JSON: {content[:80]!r}") from exc


@lru_cache(maxsize=64)
def _validator(schema_json: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(json.loads(schema_json))


_FENCE = re.compile(r"```[ \t]*([\w+#.-]*)[^\n]*\n(.*?)```", re.DOTALL)


def _code_block(content: str, language: str) -> str:
    blocks = [(lang.lower(), body) for lang, body in _FENCE.findall(content)]
    for lang, body in blocks:
        if lang == language.lower():
            return body.rstrip("\n")
    if len(blocks) == 1 and not blocks[0][0]:
        return blocks[0][1].rstrip("\n")  # one unlabelled block: take it
    raise InvalidReply(f"reply has no ```{language} code block")


def _strip_fence(content: str) -> str:
    match = _FENCE.search(content)
    return match.group(2) if match and not content.lstrip().startswith("{") else content


def arrow_type(col: LLMColumn) -> pa.DataType:
    schema = output_schema(col)
    return pa.string() if schema is None else schema_type(schema)


def schema_type(schema: dict[str, Any]) -> pa.DataType:
    """A JSON Schema as an Arrow type; what has no fixed shape is kept as JSON text."""
    kind = _kind(schema)
    if kind == "object" and schema.get("properties"):
        return pa.struct([pa.field(name, schema_type(sub)) for name, sub in schema["properties"].items()])
    if kind == "array" and isinstance(schema.get("items"), dict):
        return pa.list_(schema_type(schema["items"]))
    return {"string": pa.string(), "integer": pa.int64(), "number": pa.float64(), "boolean": pa.bool_()}.get(
        kind, pa.string()
    )


def _kind(schema: dict[str, Any]) -> str | None:
    kind = schema.get("type")
    if isinstance(kind, list):
        kinds = [k for k in kind if k != "null"]
        kind = kinds[0] if len(kinds) == 1 else None
    if kind is None and "enum" in schema:
        values = [v for v in schema["enum"] if v is not None]
        if values and all(isinstance(v, str) for v in values):
            return "string"
        if values and all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            return "integer"
        if values and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            return "number"
    return kind


def to_arrow_value(schema: dict[str, Any], value: Any) -> Any:
    """Shape a validated JSON value for ``schema_type(schema)``: absent fields become null."""
    if value is None:
        return None
    arrow = schema_type(schema)
    if pa.types.is_struct(arrow):
        return {name: to_arrow_value(sub, value.get(name)) for name, sub in schema["properties"].items()}
    if pa.types.is_list(arrow):
        return [to_arrow_value(schema["items"], v) for v in value]
    if pa.types.is_string(arrow) and not isinstance(value, str):
        return json.dumps(value, sort_keys=True)
    if pa.types.is_floating(arrow):
        try:
            return float(value)
        except OverflowError as exc:
            raise InvalidReply(f"reply holds the number {str(value)[:30]}..., too large for a float") from exc
    if pa.types.is_integer(arrow) and isinstance(value, int) and not -(2**63) <= value < 2**63:
        raise InvalidReply(f"reply holds the integer {str(value)[:30]}, which does not fit in 64 bits")
    return value
