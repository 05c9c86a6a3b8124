"""Does each server take the way its model asks for JSON? One small request before any row group.

A server that refuses a model's ``structured_output`` (llama-cpp-python's server answers
``response_format: json_schema`` with an error; some servers have no ``tools``) would fail every
structured and judge cell of every row group. So each online model that such a column uses sends
one small request shaped the way those columns ask (``CHECK_SCHEMA``, ``max_tokens: 1``: only
whether the server takes the request matters, not the reply). When
the server refuses it (a 4xx), the same request goes once more without the structured part; when
that one is answered, the way of asking is what the server refused, and the run stops before any
row group with one message naming the option to change. Any other outcome (accepted, or a server
that refuses both, or does not answer) is left to the run's own calls. What the check's requests
were billed for is returned, to be counted in the dataset's spend like any call.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field, replace

import aiohttp

from dd_core.config.dataset import DatasetConfig
from dd_core.config.llm_columns import LLMJudgeColumn, LLMStructuredColumn
from dd_core.config.model_providers import STRUCTURED_OUTPUT
from dd_core.config.models import ModelConfig
from dd_core.engine.llm.client import CallFailed, ChatClient, prompt_estimate
from dd_core.engine.llm.cost import Spend
from dd_core.engine.llm.providers import provider_for
from dd_core.engine.llm.runtime import Endpoint
from dd_core.errors import ConfigIssue

CHECK_SCHEMA = {
    "type": "object",
    "properties": {"ok": {"type": "boolean"}},
    "required": ["ok"],
    "additionalProperties": False,
}
CHECK_PROMPT = 'Reply with the JSON object {"ok": true}.'
#: The longest the check waits for an answer (or the model's shorter ``timeout_s``); no answer is
#: no verdict, left to the run.
CHECK_TIMEOUT_S = 30.0


def models_to_check(config: DatasetConfig) -> list[ModelConfig]:
    """Online models that some structured or judge column asks for JSON in a way a server may refuse."""
    aliases = sorted({c.model for c in config.columns if isinstance(c, LLMStructuredColumn | LLMJudgeColumn)})
    models = [config.model(alias) for alias in aliases]
    return [m for m in models if not m.batch and m.structured_output != "prompt"]


async def structured_output_issue(
    client: ChatClient, model: ModelConfig, base_url: str, spend: Spend | None = None
) -> ConfigIssue | None:
    """The config issue when the server behind ``client`` refuses ``model``'s ``structured_output``.
    What the check was (possibly) billed for is added to ``spend``."""
    spend = Spend() if spend is None else spend
    refused = await _ask(client, _check_request(model, model.structured_output), spend)
    if refused is None or refused.status is None or not 400 <= refused.status < 500:
        return None  # accepted, or no answer about the request's shape
    if refused.status in (401, 403, 408, 429) or await _ask(client, _check_request(model, "prompt"), spend):
        return None  # the server refuses more than the mode: the run's own calls will say why
    others = ", ".join(m for m in STRUCTURED_OUTPUT[model.provider] if m != model.structured_output)
    return ConfigIssue(
        f"model '{model.alias}' ({model.model} at {base_url}): the server refused structured output asked as "
        f"structured_output: {model.structured_output} ({refused}), and answered the same request without it; "
        f'set structured_output to one of {others} for this model (the README\'s "structured_output" says which '
        "servers take which)",
        None,
        "models.structured_output",
    )


async def _ask(client: ChatClient, payload: bytes, spend: Spend) -> CallFailed | None:
    """Send one check request; None when it was answered. An answer, or a request given up on
    after it reached the server, is counted in ``spend`` as the run's own calls are."""
    try:
        completion = await client.complete(payload)
    except CallFailed as exc:
        if exc.abandoned is not None:
            seen = exc.abandoned.tokens_seen
            spend.add_abandoned(prompt_estimate(payload), 1 if seen is None else seen)
        return exc
    spend.add_call(completion.prompt_tokens, completion.completion_tokens, batch=False)
    return None


def _check_request(model: ModelConfig, mode: str) -> bytes:
    """The check's request in the provider's own shape, as a structured column of ``model`` asks in ``mode``."""
    column = LLMStructuredColumn(
        type="llm_structured", name="check", model=model.alias, prompt=CHECK_PROMPT, output_schema=CHECK_SCHEMA
    )
    asking = model.model_copy(update={"structured_output": mode, "max_tokens": 1})
    template = provider_for(model).template(asking, column)
    return template.payload(template.prompt(None, CHECK_PROMPT), 0)


@dataclass
class CheckOutcome:
    """What the structured-output check found: each refused mode's issue, and per model alias
    what its requests were (possibly) billed for."""

    issues: list[ConfigIssue] = field(default_factory=list)
    spend: dict[str, Spend] = field(default_factory=dict)


async def refused_modes(
    session: aiohttp.ClientSession, models: list[tuple[ModelConfig, Endpoint, str]]
) -> CheckOutcome:
    """Check each (model, its endpoint, the base_url to show) at once."""
    outcome = CheckOutcome()

    async def one(model: ModelConfig, endpoint: Endpoint, shown: str) -> ConfigIssue | None:
        timeouts = replace(endpoint.timeouts, first_byte_s=min(endpoint.timeouts.first_byte_s, CHECK_TIMEOUT_S))
        client = ChatClient(session, provider_for(model).chat_dialect(endpoint), timeouts, stream=model.streams)
        return await structured_output_issue(client, model, shown, outcome.spend.setdefault(model.alias, Spend()))

    found = await asyncio.gather(*(one(*model) for model in models))
    outcome.issues = [issue for issue in found if issue is not None]
    outcome.spend = {
        alias: spend for alias, spend in outcome.spend.items() if spend.requests or spend.abandoned_requests
    }
    return outcome
