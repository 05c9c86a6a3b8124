"""OpenAI's chat completions and Batch API, as OpenAI, vLLM, SGLang, llama.cpp, Ollama and most
hosted open-model services speak them: ``{base_url}/chat/completions`` with a bearer key."""

from __future__ import annotations

import aiohttp

from dd_core.config.llm_columns import LLMColumn
from dd_core.config.models import ModelConfig
from dd_core.engine.llm.batch_client import BatchClient, bearer
from dd_core.engine.llm.cells import response_format
from dd_core.engine.llm.client import ChatDialect
from dd_core.engine.llm.runtime import Endpoint
from dd_core.engine.llm.wire import BodyTemplate, encode_chat


class ChatTemplate(BodyTemplate):
    """A chat-completions body: the model, its sampling parameters and the column's
    ``response_format``, then each request's messages and seed."""

    prompt = staticmethod(encode_chat)

    def __init__(self, model: ModelConfig, column: LLMColumn, body_model: str | None = None):
        body = {"model": body_model or model.model, **model.sampling_params()}
        fmt = response_format(column)
        if fmt is not None:
            body["response_format"] = fmt
        super().__init__(body)


def template(model: ModelConfig, column: LLMColumn) -> ChatTemplate:
    return ChatTemplate(model, column)


def chat_dialect(endpoint: Endpoint) -> ChatDialect:
    return ChatDialect(url=endpoint.base_url.rstrip("/") + "/chat/completions", headers=bearer(endpoint.api_key))


def batch_api(session: aiohttp.ClientSession, endpoint: Endpoint) -> BatchClient:
    return BatchClient(
        session, endpoint.base_url, bearer(endpoint.api_key), timeout_s=endpoint.timeout_s, model=endpoint.model
    )
