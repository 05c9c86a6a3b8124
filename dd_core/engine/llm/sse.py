"""Server-sent events, whatever the provider: the ``data`` of each event of a streamed reply.

OpenAI-compatible servers send ``data: {chunk}`` lines and a final ``data: [DONE]``; Anthropic's
Messages API names each event (``event: content_block_delta``) and repeats its type inside the
data, so the data lines alone carry everything either needs. Every line read tells the reply's
clock something arrived (``ReplyClock.heard``); a line longer than aiohttp reads at once (512 KiB)
is a ``MalformedReply`` (a stream cannot make dd read without bound).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
from aiohttp.http_exceptions import HttpProcessingError

from dd_core.engine.llm.replies import MalformedReply
from dd_core.engine.llm.timeouts import ReplyClock


async def event_data(response: aiohttp.ClientResponse, clock: ReplyClock) -> AsyncIterator[bytes]:
    """The data of each event, in order, until the stream ends (``[DONE]`` is the caller's to see)."""
    content = response.content
    while True:
        try:
            line = await content.readuntil(b"\n")
        except (ValueError, HttpProcessingError) as exc:  # a line past aiohttp's limit (LineTooLong)
            raise MalformedReply(f"a line of the stream is too long ({str(exc).splitlines()[0][:80]})") from exc
        if not line:
            return
        clock.heard()
        if line.startswith(b"data:"):
            yield line[5:].strip()
