"""LLM-written columns: free text, JSON-schema structured output, judge scores, code."""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import Field, field_serializer, field_validator, model_validator

from dd_core.config.base import ConfigModel, FieldProblem
from dd_core.config.columns import ColumnConfig, Scalar
from dd_core.config.templates import check_safe, referenced_names


class LLMColumn(ColumnConfig):
    """Common fields: the model alias, a Jinja prompt and an optional system prompt."""

    model: str
    prompt: str
    system_prompt: str | None = None
    #: Re-asks (with a new per-attempt seed) after a reply that does not parse or validate.
    max_invalid_retries: int = Field(default=2, ge=0, le=20)

    fingerprint_exclude = frozenset({"description", "max_invalid_retries"})

    @field_validator("prompt", "system_prompt")
    @classmethod
    def _template(cls, text: str | None) -> str | None:
        if text is not None:
            check_safe(text)  # a TemplateProblem is a ValueError: pydantic reports it on this field
        return text

    def dependencies(self) -> dict[str, set[str]]:
        deps = {"prompt": referenced_names(self.prompt)}
        if self.system_prompt:
            deps["system_prompt"] = referenced_names(self.system_prompt)
        return deps

    def templates(self) -> dict[str, str]:
        return {"prompt": self.prompt, **({"system_prompt": self.system_prompt} if self.system_prompt else {})}


class LLMTextColumn(LLMColumn):
    type: Literal["llm_text"]


class LLMStructuredColumn(LLMColumn):
    """The reply must be JSON valid against ``output_schema``; the column holds it as a struct."""

    type: Literal["llm_structured"]
    output_schema: dict[str, Any]

    @field_validator("output_schema")
    @classmethod
    def _schema(cls, schema: dict[str, Any]) -> dict[str, Any]:
        import jsonschema  # ~50 ms to import: only configs with structured columns pay for it

        try:
            jsonschema.Draft202012Validator.check_schema(schema)
        except jsonschema.SchemaError as exc:
            raise ValueError(f"not a valid JSON Schema: {exc.message}") from exc
        if schema.get("type") != "object":
            raise ValueError('the top level must be {"type": "object", "properties": {...}}')
        return schema


class JudgeScore(ConfigModel):
    """One named score of a rubric."""

    name: str
    description: str = ""
    #: Allowed values, optionally with what each means.
    options: dict[Scalar, str] | list[Scalar] = Field(min_length=1)

    fingerprint_exclude = frozenset()

    @field_validator("options", mode="before")
    @classmethod
    def _described_list(cls, options: Any) -> Any:
        """``[{value: 1, description: wrong}, ...]``: described values that are not strings, in JSON."""
        if isinstance(options, list) and options and all(isinstance(o, dict) and "value" in o for o in options):
            values = [o["value"] for o in options]
            if len({json.dumps(v) for v in values}) != len(values):
                raise ValueError(f"option values must be unique, got {values}")
            return {o["value"]: o.get("description", "") for o in options}
        return options

    @field_serializer("options", when_used="json")
    def _json_options(self, options: dict[Scalar, str] | list[Scalar]) -> Any:
        # JSON keys are strings: values 1, 2, 3 are written as a described list so config.json keeps them numbers.
        if isinstance(options, dict) and not all(isinstance(k, str) for k in options):
            return [{"value": k, "description": d} for k, d in options.items()]
        return options

    @property
    def values(self) -> list[Scalar]:
        return list(self.options)


class LLMJudgeColumn(LLMColumn):
    """Scores a row against a rubric; the column holds ``{score_name: {score, reason}}``."""

    type: Literal["llm_judge"]
    scores: list[JudgeScore] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> LLMJudgeColumn:
        names = [s.name for s in self.scores]
        if len(set(names)) != len(names):
            raise FieldProblem("scores", f"score names must be unique, got {names}")
        return self


class LLMCodeColumn(LLMColumn):
    """Asks for one fenced code block in ``language`` and keeps only the code."""

    type: Literal["llm_code"]
    language: str = Field(pattern=r"^[A-Za-z0-9_+#.-]+$")


LLM_COLUMN_TYPES = (LLMTextColumn, LLMStructuredColumn, LLMJudgeColumn, LLMCodeColumn)
