"""A successful answer, whatever the protocol: whole, or as the server-sent events of a stream when
the request asks for one; spread over time (a slow reply) or stopped part-way (a stalled stream)
when a fault says so."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from aiohttp import web

from dd_core.testing.llm_server.protocol import ChatProtocol, ChatRequest


async def reply(
    request: web.Request,
    protocol: ChatProtocol,
    chat: ChatRequest,
    content: str,
    headers: Mapping[str, str] | None = None,
    *,
    spread_s: float = 0.0,
    stall_after: int | None = None,
) -> web.StreamResponse:
    """``content`` as ``protocol`` answers it: over ``spread_s`` more seconds (streamed: its events
    spread evenly), and with ``stall_after`` set, nothing after that many events (not streamed:
    nothing at all) until the client goes away."""
    if not chat.stream:
        if stall_after is not None:
            await asyncio.Event().wait()
        await asyncio.sleep(spread_s)
        return protocol.completion(chat, content, headers)
    events = protocol.stream_events(chat, content)
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache", **(headers or {})}
    )
    await response.prepare(request)
    if not spread_s and stall_after is None:
        await response.write(b"".join(events))  # at once: the client still reads event by event
    else:
        gap = spread_s / len(events)
        for number, event in enumerate(events):
            if stall_after is not None and number >= stall_after:
                await asyncio.Event().wait()
            await asyncio.sleep(gap)
            await response.write(event)
    await response.write_eof()
    return response
