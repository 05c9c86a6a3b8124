"""A local LLM API server for tests and benchmarks (see :mod:`.service`)."""

from dd_core.testing.llm_server.cli import main
from dd_core.testing.llm_server.handles import OpenAIServer, OpenAIServerProcess
from dd_core.testing.llm_server.latency import Serving
from dd_core.testing.llm_server.service import reply_content, request_key

__all__ = ["OpenAIServer", "OpenAIServerProcess", "Serving", "main", "reply_content", "request_key"]
