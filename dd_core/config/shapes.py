"""What a config says each column's values look like, for checking the acceptance rule before
a run: true/false, a number, text, a list, a struct with known fields, or unknown."""

from __future__ import annotations

from typing import Any

from dd_core.config.columns import (
    BernoulliColumn,
    BinomialColumn,
    CategoryColumn,
    ColumnConfig,
    ExpressionColumn,
    GaussianColumn,
    PersonColumn,
    PoissonColumn,
    ScipyColumn,
    SubcategoryColumn,
    UniformColumn,
    UUIDColumn,
)
from dd_core.config.llm_columns import LLMCodeColumn, LLMJudgeColumn, LLMStructuredColumn, LLMTextColumn
from dd_core.config.rule import BOOL, LIST, NUMBER, TEXT, UNKNOWN, Shape
from dd_core.config.validation_columns import ValidationColumn

_NUMBERS = (UniformColumn, GaussianColumn, BinomialColumn, PoissonColumn, ScipyColumn)
_EXPRESSION = {"str": TEXT, "int": NUMBER, "float": NUMBER, "bool": BOOL}
_PERSON_FIELDS = ("first_name", "last_name", "sex", "age", "email", "city", "state")
VALIDATION_SHAPE: dict[str, Shape] = {"is_valid": BOOL, "reason": TEXT}


def column_shape(col: ColumnConfig, name: str) -> Shape:
    """The shape of output ``name`` of ``col``."""
    if isinstance(col, _NUMBERS):
        return NUMBER
    if isinstance(col, BernoulliColumn):
        return BOOL
    if isinstance(col, (CategoryColumn, SubcategoryColumn)):
        values = col.values if isinstance(col, CategoryColumn) else [v for vs in col.values.values() for v in vs]
        return _scalar_shape(values[0])
    if isinstance(col, (UUIDColumn, LLMTextColumn, LLMCodeColumn)):
        return TEXT
    if isinstance(col, ExpressionColumn):
        return _EXPRESSION[col.dtype]
    if isinstance(col, PersonColumn):
        return {field: NUMBER if field == "age" else TEXT for field in _PERSON_FIELDS}
    if isinstance(col, ValidationColumn):
        return dict(VALIDATION_SHAPE)
    if isinstance(col, LLMJudgeColumn):
        return {s.name: {"score": _scalar_shape(s.values[0]), "reason": TEXT} for s in col.scores}
    if isinstance(col, LLMStructuredColumn):
        return schema_shape(col.output_schema)
    return UNKNOWN  # datetimes (text or timestamps by format), seed dataset columns


def _scalar_shape(value: Any) -> Shape:
    return BOOL if isinstance(value, bool) else NUMBER if isinstance(value, (int, float)) else TEXT


def schema_shape(schema: Any) -> Shape:
    """A JSON Schema's shape (as ``dd_core.engine.llm.cells.schema_type`` stores it)."""
    if not isinstance(schema, dict):
        return UNKNOWN
    kind = schema.get("type")
    if isinstance(kind, list):
        kinds = [k for k in kind if k != "null"]
        kind = kinds[0] if len(kinds) == 1 else None
    if kind is None and "enum" in schema:
        values = [v for v in schema["enum"] if v is not None]
        shapes = {_scalar_shape(v) for v in values}
        return shapes.pop() if len(shapes) == 1 else UNKNOWN
    if kind == "object" and isinstance(schema.get("properties"), dict) and schema["properties"]:
        return {name: schema_shape(sub) for name, sub in schema["properties"].items()}
    return {"string": TEXT, "integer": NUMBER, "number": NUMBER, "boolean": BOOL, "array": LIST}.get(kind, UNKNOWN)
