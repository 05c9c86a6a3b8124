"""OpenAI's chat completions and Batch API, as OpenAI, vLLM, SGLang, llama.cpp, Ollama and most
hosted open-model services speak them: ``{base_url}/chat/completions`` with a bearer key."""

from __future__ import annotations

import aiohttp

from dd_core.config.llm_columns import LLMColumn
from dd_core.config.models import ModelConfig
from dd_core.engine.llm.batch_client import BatchClient, bearer
from dd_core.engine.llm.cells import structured_fields
from dd_core.engine.llm.client import OPENAI_STREAM_FIELDS, ChatDialect
from dd_core.engine.llm.runtime import Endpoint
from dd_core.engine.llm.wire import BodyTemplate, encode_chat


class ChatTemplate(BodyTemplate):
    """A chat-completions body: the model, its sampling parameters and the fields that ask for the
    column's JSON in the model's ``structured_output`` mode, then each request's messages and seed."""

    prompt = staticmethod(encode_chat)

    def __init__(self, model: ModelConfig, column: LLMColumn, body_model: str | None = None):
        fields = structured_fields(column, model.structured_output)
        super().__init__({"model": body_model or model.model, **model.sampling_params(), **fields})


def template(model: ModelConfig, column: LLMColumn) -> ChatTemplate:
    return ChatTemplate(model, column)


def chat_dialect(endpoint: Endpoint) -> ChatDialect:
    return ChatDialect(
        url=endpoint.base_url.rstrip("/") + "/chat/completions",
        headers=bearer(endpoint.api_key),
        stream_fields=OPENAI_STREAM_FIELDS,
    )


def batch_api(session: aiohttp.ClientSession, endpoint: Endpoint) -> BatchClient:
    return BatchClient(
        session, endpoint.base_url, bearer(endpoint.api_key), timeouts=endpoint.timeouts, model=endpoint.model
    )
