"""A local LLM API server for tests and benchmarks.

It speaks, on one port, OpenAI's chat completions (``POST /v1/chat/completions``, ``GET
/v1/models``) and its Files and Batch APIs like vLLM or OpenAI, Azure OpenAI's (deployments, API
versions, its own batch paths and limits) and Anthropic's Messages and Message Batches APIs;
answers deterministically from a hash of the request, and lets tests set latency, rate limits and
faults at runtime through a control API under ``/_control``. ``GET /metrics`` reports vLLM's ``vllm:num_requests_running`` and
``vllm:num_requests_waiting`` (``metrics=False`` leaves it out, like a server without metrics).

Run it with :class:`OpenAIServer` (a thread of this process), :class:`OpenAIServerProcess`
(a child process that shares no GIL with the code under test), or
``python -m dd_core.testing.llm_server --port 0`` (prints ``LISTENING <port>``).

A provider's protocol is one module; the rest serves every protocol alike:

- ``openai_chat``: OpenAI's chat completions (request key, which reply, bodies, errors);
  ``azure_chat``: Azure OpenAI's; ``anthropic_chat``: Anthropic's Messages API;
- ``batch_lifecycle``: every protocol's batches (settings, states, injected failures, the
  ``/_control/batches`` API); ``openai_batches`` and ``openai_batch_files``: OpenAI's and Azure's
  Files and Batch APIs; ``anthropic_batches``: Anthropic's Message Batches;
- ``protocol``: what a protocol module gives the shared parts;
- ``replies`` and ``schema_faker``: the reply content, fixed by the request key;
- ``faults``: injectable faults (a ``hold`` fault keeps requests until the test releases it); ``latency``: fixed,
  lognormal and bounded-batch serving; ``batch_clock``: the clock batches move by, which a test can stop;
  ``rate_limits``: requests and tokens per minute; ``stats``: counters and ``/metrics``;
- ``control``: the ``/_control`` API of faults, stats and latency;
- ``service``: one server's state and routes; ``handles``: its Python handles; ``cli``: its
  command line.
"""

from dd_core.testing.llm_server.cli import main
from dd_core.testing.llm_server.handles import OpenAIServer, OpenAIServerProcess
from dd_core.testing.llm_server.latency import Serving
from dd_core.testing.llm_server.openai_chat import reply_content, request_key

__all__ = ["OpenAIServer", "OpenAIServerProcess", "Serving", "main", "reply_content", "request_key"]
