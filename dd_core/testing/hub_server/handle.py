"""``HubServer``: the local Hub on an event loop in a thread, started and stopped by a test."""

from __future__ import annotations

import asyncio
import socket
import threading
from typing import Self

from aiohttp import web

from dd_core.testing.hub_server.repos import Hub
from dd_core.testing.hub_server.routes import Faults, HubApi

HOST = "127.0.0.1"


class HubServer:
    def __init__(self, tokens: dict[str, str] | None = None):
        with socket.socket() as sock:
            sock.bind((HOST, 0))
            self.port = sock.getsockname()[1]
        self.api = HubApi(tokens or {}, self.url)
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def hub(self) -> Hub:
        return self.api.hub

    @property
    def faults(self) -> Faults:
        return self.api.faults

    def start(self) -> Self:
        ready = threading.Event()

        def serve() -> None:
            asyncio.set_event_loop(self._loop)
            self._runner = web.AppRunner(self.api.app(), access_log=None)
            self._loop.run_until_complete(self._runner.setup())
            self._loop.run_until_complete(web.TCPSite(self._runner, HOST, self.port).start())
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=serve, name="dd-hub-server", daemon=True)
        self._thread.start()
        ready.wait()
        return self

    def stop(self) -> None:
        if self._thread is None:
            return
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(30)
        self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
