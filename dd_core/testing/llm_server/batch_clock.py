"""The clock batches move by, for any provider's batch API: real time, or stopped where a test
holds it and moved on by the test (``POST /_control/batches/clock``). A test that stops it decides
when a batch leaves each state (it holds a batch in progress until it advances the clock) instead
of racing a timer."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web


class BatchClock:
    """Running, it reads ``real`` plus an offset; stopped, it stands where it was stopped until
    advanced. Running again, it goes on from where it stood."""

    def __init__(self, real: Callable[[], float] = time.monotonic):
        self._real = real
        self._offset = 0.0
        self._stopped_at: float | None = None

    def __call__(self) -> float:
        return self._stopped_at if self._stopped_at is not None else self._real() + self._offset

    @property
    def stopped(self) -> bool:
        return self._stopped_at is not None

    def stop(self) -> None:
        self._stopped_at = self()

    def advance(self, seconds: float) -> None:
        if self._stopped_at is None:
            self._offset += seconds
        else:
            self._stopped_at += seconds

    def run(self) -> None:
        if self._stopped_at is not None:
            self._offset, self._stopped_at = self._stopped_at - self._real(), None


def clock_route(clock: BatchClock, error: Callable[[int, str], web.Response]) -> web.RouteDef:
    """``POST /_control/batches/clock``: ``{"stopped": true}`` stops the clock, ``{"advance_s": x}``
    moves it on, ``{"stopped": false}`` lets it run again (in that order when combined)."""

    async def drive(request: web.Request) -> web.Response:
        try:
            body: Any = await request.json()
        except ValueError:
            body = None
        stopped, advance_s = (body.get("stopped"), body.get("advance_s", 0)) if isinstance(body, dict) else (None, None)
        number = isinstance(advance_s, (int, float)) and not isinstance(advance_s, bool)
        if not (stopped in (None, True, False) and number and math.isfinite(advance_s) and advance_s >= 0):
            return error(400, 'Expected a JSON body {"stopped": true|false} and/or {"advance_s": x} (x >= 0).')
        if stopped is True:
            clock.stop()
        clock.advance(advance_s)
        if stopped is False:
            clock.run()
        return web.json_response({"stopped": clock.stopped, "now": clock()})

    return web.post("/_control/batches/clock", drive)
