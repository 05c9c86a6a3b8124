"""The control API through which tests steer a running server, whatever protocol it speaks:

- ``POST /_control/faults`` ``{"rules": [...]}`` replaces the fault rules (see
  :class:`~dd_core.testing.llm_server.faults.FaultRule`), ``DELETE /_control/faults`` clears them;
- ``POST /_control/release`` ``{"name": "..."}`` lets the requests held by the ``hold`` rule of
  that name go on (and any it picks later); without a name, every hold rule's;
- ``GET /_control/stats``; ``POST /_control/reset`` clears the stats (not the rules);
- ``POST /_control/latency`` ``{"latency_ms": x, "jitter_ms": y, "sigma": s, "seed": n}``.

Rate limits and batches add their own ``/_control/...`` routes next to these.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from aiohttp import web

from dd_core.testing.llm_server.faults import FaultRule, Faults
from dd_core.testing.llm_server.latency import Latency
from dd_core.testing.llm_server.protocol import json_or_none
from dd_core.testing.llm_server.stats import Stats


def add_routes(
    app: web.Application, *, faults: Faults, stats: Stats, latency: Latency, error: Callable[[int, str], web.Response]
) -> None:
    """The routes above; ``error(status, message)`` renders a refused call (400)."""

    async def set_faults(request: web.Request) -> web.Response:
        body = await json_or_none(request)
        rules = body.get("rules") if isinstance(body, dict) else None
        if not isinstance(rules, list):
            return error(400, 'Expected a JSON body {"rules": [...]}.')
        try:
            faults.replace([FaultRule.from_json(rule) for rule in rules])
        except ValueError as exc:
            return error(400, str(exc))
        return web.json_response({"rules": len(faults.rules)})

    async def clear_faults(request: web.Request) -> web.Response:
        faults.replace([])
        return web.json_response({"rules": 0})

    async def release(request: web.Request) -> web.Response:
        body = await json_or_none(request)
        name = body.get("name") if isinstance(body, dict) else None
        try:
            return web.json_response({"released": faults.release(name)})
        except KeyError:
            return error(400, f"No hold rule is named {name!r}; hold rules: {sorted(faults.holds)}.")

    async def get_stats(request: web.Request) -> web.Response:
        return web.json_response(stats.snapshot())

    async def reset_stats(request: web.Request) -> web.Response:
        stats.reset()
        return web.json_response({"reset": True})

    async def set_latency(request: web.Request) -> web.Response:
        body = await json_or_none(request)
        try:
            latency_ms, jitter_ms = float(body["latency_ms"]), float(body.get("jitter_ms", 0))
            sigma, seed = float(body.get("sigma", 0)), int(body.get("seed", latency.serving.latency_seed))
        except (TypeError, KeyError, ValueError, AttributeError):
            return error(400, 'Expected a JSON body {"latency_ms": x, "jitter_ms": y, "sigma": s, "seed": n}.')
        try:
            serving = dataclasses.replace(
                latency.serving, latency_ms=latency_ms, jitter_ms=jitter_ms, latency_sigma=sigma, latency_seed=seed
            )
        except ValueError:
            return error(400, "Latency, jitter and sigma must be finite and not negative.")
        latency.serving = serving
        return web.json_response({"latency_ms": latency_ms, "jitter_ms": jitter_ms, "sigma": sigma, "seed": seed})

    app.add_routes(
        [
            web.post("/_control/faults", set_faults),
            web.delete("/_control/faults", clear_faults),
            web.post("/_control/release", release),
            web.get("/_control/stats", get_stats),
            web.post("/_control/reset", reset_stats),
            web.post("/_control/latency", set_latency),
        ]
    )
