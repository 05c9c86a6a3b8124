"""Does each server take the way its model asks for JSON? One small request before any row group.

A server that refuses a model's ``structured_output`` (llama-cpp-python's server answers
``response_format: json_schema`` with an error; some servers have no ``tools``) would fail every
structured and judge cell of every row group. So each online model that such a column uses sends
one small request shaped the way those columns ask (``CHECK_SCHEMA``, ``max_tokens: 16``). When
the server refuses it (a 4xx), the same request goes once more without the structured part; when
that one is answered, the way of asking is what the server refused, and the run stops before any
row group with one message naming the option to change. Any other outcome (accepted, or a server
that refuses both, or does not answer) is left to the endpoint check and the run's own retries.
"""

from __future__ import annotations

from dd_core.config.dataset import DatasetConfig
from dd_core.config.llm_columns import LLMJudgeColumn, LLMStructuredColumn
from dd_core.config.models import ModelConfig
from dd_core.engine.llm.cells import schema_fields
from dd_core.engine.llm.client import CallFailed, ChatClient
from dd_core.engine.llm.wire import serialise
from dd_core.errors import ConfigIssue

CHECK_SCHEMA = {
    "type": "object",
    "properties": {"ok": {"type": "boolean"}},
    "required": ["ok"],
    "additionalProperties": False,
}
CHECK_PROMPT = 'Reply with the JSON object {"ok": true}.'
MODES = ("json_schema", "json_object", "tool", "prompt")


def models_to_check(config: DatasetConfig) -> list[ModelConfig]:
    """Online models that some structured or judge column asks for JSON in a way a server may refuse."""
    aliases = sorted({c.model for c in config.columns if isinstance(c, LLMStructuredColumn | LLMJudgeColumn)})
    models = [config.model(alias) for alias in aliases]
    return [m for m in models if not m.batch and m.structured_output != "prompt"]


async def structured_output_issue(client: ChatClient, model: ModelConfig, base_url: str) -> ConfigIssue | None:
    """The config issue when the server behind ``client`` refuses ``model``'s ``structured_output``."""
    body = {
        "model": model.model,
        "messages": [{"role": "user", "content": CHECK_PROMPT}],
        "max_tokens": 16,
        **model.extra_body,
    }
    try:
        await client.complete(serialise({**body, **schema_fields("check", CHECK_SCHEMA, model.structured_output)}))
        return None
    except CallFailed as exc:
        refused = exc
    if refused.status is None or not 400 <= refused.status < 500 or refused.status in (401, 403, 408, 429):
        return None  # not an answer about the request's shape
    try:
        await client.complete(serialise(body))
    except CallFailed:
        return None  # the server refuses more than the mode: the endpoint check's business
    others = ", ".join(m for m in MODES if m != model.structured_output)
    return ConfigIssue(
        f"model '{model.alias}' ({model.model} at {base_url}): the server refused structured output asked as "
        f"structured_output: {model.structured_output} ({refused}), and answered the same request without it; "
        f'set structured_output to one of {others} for this model (the README\'s "structured_output" says which '
        "servers take which)",
        None,
        "models.structured_output",
    )
