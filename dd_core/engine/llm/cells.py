"""What each LLM column type asks for, how its reply is checked, and its Arrow type.

Structured and judge columns ask for JSON the way their model's ``structured_output`` says
(``structured_fields``); whichever way, the reply is read the same (``parse_reply``): the JSON
object in it, fenced or not, checked against the schema. A code column takes its fenced block in
its language, else any fenced block, else the whole reply (small open models often answer with
the code alone, or fence it in another language).
"""

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


def instructions(col: LLMColumn, mode: str) -> str | None:
    """Text appended to the system prompt so any model knows the expected shape; with a
    ``structured_output`` other than ``json_schema`` the schema itself follows (the server is not
    given it, or may ignore it)."""
    text = _shape(col)
    schema = output_schema(col)
    if schema is not None and mode != "json_schema":
        text += "\nThe JSON schema:\n" + json.dumps(schema, sort_keys=True)
    return text


def _shape(col: LLMColumn) -> str | None:
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


def structured_fields(col: LLMColumn, mode: str) -> dict[str, Any]:
    """The request-body fields that ask for the column's JSON in ``mode`` (the model's
    ``structured_output``); none for a column without a schema, or in ``prompt`` mode."""
    schema = output_schema(col)
    return {} if schema is None else schema_fields(col.name, schema, mode)


def schema_fields(name: str, schema: dict[str, Any], mode: str) -> dict[str, Any]:
    """The request-body fields that ask for JSON following ``schema`` in ``mode``."""
    if mode == "prompt":
        return {}
    if mode == "json_schema":
        return {
            "response_format": {"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": True}}
        }
    if mode == "json_object":
        # Together, Fireworks, llama.cpp and llama-cpp-python constrain JSON mode by a "schema" beside the type.
        return {"response_format": {"type": "json_object", "schema": schema}}
    tool = tool_name(name)
    return {
        "tools": [
            {"type": "function", "function": {"name": tool, "description": TOOL_DESCRIPTION, "parameters": schema}}
        ],
        "tool_choice": {"type": "function", "function": {"name": tool}},
    }


TOOL_DESCRIPTION = "Record the answer."


def tool_name(column: str) -> str:
    """The function a ``tool``-mode request asks the model to call (names allow [A-Za-z0-9_-], 64)."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", column)[:64] or "answer"


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
        value = _json_in(content)
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
_OPEN_FENCE = re.compile(r"```[ \t]*[\w+#.-]*[^\n]*\n(.*)\Z", re.DOTALL)


def _code_block(content: str, language: str) -> str:
    """The block in ``language``, else the first fenced block, else an opened fence's rest, else
    the whole reply: whatever the model wrote, as long as it wrote something."""
    blocks = [(lang.lower(), body) for lang, body in _FENCE.findall(content)]
    asked = [body for lang, body in blocks if lang == language.lower()]
    if asked or blocks:
        code = (asked or [body for _, body in blocks])[0].rstrip("\n")
    else:
        opened = _OPEN_FENCE.search(content)
        code = (opened.group(1) if opened else content).strip("\n")
    if not code.strip():
        raise InvalidReply(f"reply holds no {language} code: {content[:80]!r}")
    return code


def _json_in(content: str) -> Any:
    """The JSON value of a reply: all of it, else its first fenced block, else the text from its
    first ``{`` to its last ``}`` (a model that says something around the object)."""
    text = content.strip()
    try:
        return json.loads(text)
    except ValueError:
        pass
    match = _FENCE.search(text)
    if match:
        try:
            return json.loads(match.group(2))
        except ValueError:
            pass
    start, end = text.find("{"), text.rfind("}")
    if 0 <= start < end:
        return json.loads(text[start : end + 1])
    raise ValueError("no JSON object")


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
