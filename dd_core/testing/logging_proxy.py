"""A logging proxy in front of a real model server: what was asked, what was delivered, what was
abandoned, and a gate that holds replies back so a test chooses the moment it kills a client.

Every request is forwarded as it came (method, path, body, headers but the host) and its reply
streamed back as it comes (a streamed reply chunk by chunk). Each exchange is logged: the body's
sha256, arrival and end (monotonic seconds), the upstream status, and how it ended: ``delivered``
(the whole reply went out to the client) or ``abandoned`` (the client went away first: the
server may have generated it, and a provider billed it, for nothing); the upstream request is
then dropped too. ``summary`` counts the POSTs (what is paid for; not ``GET /metrics``): requests,
distinct bodies, re-sent bodies (sent more than once) and abandoned ones.

``hold_after(n)``: the next ``n`` replies to POSTs go out, later ones wait (their generation
goes on upstream) until ``release()``: a test waits until the client has acted on ``n`` replies,
kills it, and knows exactly which replies it had.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
from collections import Counter
from typing import Any, Self

import aiohttp
from aiohttp import web

HOST = "127.0.0.1"
_HOP_BY_HOP = {"host", "content-length", "transfer-encoding", "connection", "keep-alive"}


class LoggingProxy:
    def __init__(self, upstream: str):
        """``upstream``: the server's root URL, e.g. ``http://127.0.0.1:8080``."""
        self.upstream = upstream.rstrip("/")
        self.port: int | None = None
        self._exchanges: list[dict[str, Any]] = []
        self._passed = 0  # replies that went through the gate
        self._limit: int | None = None
        self._gate: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def base_url(self) -> str:
        """The OpenAI base URL through the proxy (``.../v1``)."""
        return f"http://{HOST}:{self.port}/v1"

    # --- the test's side -------------------------------------------------------------

    def start(self) -> Self:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="dd-logging-proxy", daemon=True)
        self._thread.start()
        self.port = self._call(self._start())
        return self

    def stop(self) -> None:
        if self._loop is None:
            return
        self._call(self._stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()
        self._loop = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def exchanges(self) -> list[dict[str, Any]]:
        """Every exchange so far (those in progress have ``ended`` None)."""
        return self._call(self._snapshot())

    def summary(self) -> dict[str, int]:
        exchanges = [e for e in self.exchanges() if e["method"] == "POST"]
        bodies = Counter(e["body_sha256"] for e in exchanges)
        return {
            "requests": len(exchanges),
            "distinct": len(bodies),
            "resent": sum(n - 1 for n in bodies.values()),
            "delivered": sum(e["ended"] == "delivered" for e in exchanges),
            "abandoned": sum(e["ended"] == "abandoned" for e in exchanges),
        }

    def hold_after(self, replies: int) -> None:
        """Let ``replies`` more replies out, then hold the rest until ``release``."""
        self._call(self._hold(replies))

    def release(self) -> None:
        self._call(self._release())

    def _call(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=60)

    # --- the proxy's loop ------------------------------------------------------------

    async def _start(self) -> int:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0), timeout=aiohttp.ClientTimeout(total=None)
        )
        self._gate = asyncio.Event()
        self._gate.set()
        app = web.Application(client_max_size=64 * 2**20)
        app.router.add_route("*", "/{path:.*}", self._forward)
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, HOST, 0)
        await site.start()
        return self._runner.addresses[0][1]

    async def _stop(self) -> None:
        self._gate.set()
        await self._runner.cleanup()
        await self._session.close()

    async def _snapshot(self) -> list[dict[str, Any]]:
        return [dict(e) for e in self._exchanges]

    async def _hold(self, replies: int) -> None:
        self._limit = self._passed + replies
        self._gate.clear()

    async def _release(self) -> None:
        self._limit = None
        self._gate.set()

    async def _through_gate(self) -> None:
        while self._limit is not None and self._passed >= self._limit:
            await self._gate.wait()
        self._passed += 1

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        exchange: dict[str, Any] = {
            "method": request.method,
            "path": request.path,
            "body_sha256": hashlib.sha256(body).hexdigest(),
            "started": time.monotonic(),
            "finished": None,
            "status": None,
            "ended": None,
        }
        self._exchanges.append(exchange)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
        try:
            async with self._session.request(
                request.method, self.upstream + request.path_qs, data=body, headers=headers
            ) as upstream:
                exchange["status"] = upstream.status
                if request.method == "POST":
                    await self._through_gate()
                response = web.StreamResponse(status=upstream.status)
                for name in ("Content-Type", "Cache-Control"):
                    if name in upstream.headers:
                        response.headers[name] = upstream.headers[name]
                await response.prepare(request)
                async for chunk in upstream.content.iter_any():
                    await response.write(chunk)
                await response.write_eof()
            exchange["ended"] = "delivered"
            return response
        except (asyncio.CancelledError, ConnectionResetError, aiohttp.ClientConnectionResetError):
            exchange["ended"] = "abandoned"
            raise
        finally:
            exchange["finished"] = time.monotonic()
