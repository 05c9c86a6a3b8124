"""A local LLM API server for tests and benchmarks (see :mod:`.service`)."""

from dd_core.testing.llm_server.service import OpenAIServer, OpenAIServerProcess, Serving, main, request_key

__all__ = ["OpenAIServer", "OpenAIServerProcess", "Serving", "main", "request_key"]
