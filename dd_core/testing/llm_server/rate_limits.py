"""Requests- and tokens-per-minute limits of the local test server, as hosted endpoints enforce them.

Enforced the way OpenAI and Anthropic describe their limits: one bucket per limit, holding up to
the limit and refilled continuously over ``window_s`` seconds (60 by default); a request that
finds too little in a bucket is answered 429. Every chat answer says what is left (``Budget``:
limit, remaining, seconds until full), each protocol in its own headers: OpenAI's
``x-ratelimit-{limit,remaining,reset}-{requests,tokens}`` (resets like ``"1s"``, ``"6m0s"``,
``"20ms"``: ``openai_headers``), Azure's remaining counts only, Anthropic's
``anthropic-ratelimit-*`` with RFC 3339 resets. A refused request is also told when it would fit
(``Admission.retry_after_s``). A request's tokens are those of its reply's usage (the server
computes the reply on arrival).

A bucket lets up to twice its limit through in one window (a full bucket, then a window's
refill), so the server refusing nothing does not show that a client kept to a limit: the
arrival log does (see ``max_in_any_window``).

Configured at runtime through ``POST /_control/rate_limits`` ``{"requests_per_minute": 60,
"tokens_per_minute": 1000, "window_s": 60, "enforce": true}`` (``DELETE`` removes the limits);
``GET /_control/rate_limits`` returns the settings and the arrival log (``t`` on the server's
monotonic clock, ``tokens``, ``admitted``).
"""

from __future__ import annotations

import dataclasses
import math
from collections import deque
from collections.abc import Mapping
from typing import Any

from aiohttp import web

ARRIVAL_LOG_SIZE = 100_000


@dataclasses.dataclass(frozen=True)
class RateLimitSettings:
    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None
    window_s: float = 60.0
    #: False: send the headers and log arrivals, but answer every request.
    enforce: bool = True

    def __post_init__(self) -> None:
        for name in ("requests_per_minute", "tokens_per_minute"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"{name!r} must be a positive whole number or null, got {value!r}")
        if not (isinstance(self.window_s, (int, float)) and math.isfinite(self.window_s) and self.window_s > 0):
            raise ValueError(f"'window_s' must be a positive number of seconds, got {self.window_s!r}")

    @classmethod
    def from_json(cls, data: Any) -> RateLimitSettings:
        if not isinstance(data, dict):
            raise ValueError(f"rate-limit settings must be a JSON object, got {data!r}")
        try:
            return cls(**data)
        except TypeError as exc:
            raise ValueError(f"bad rate-limit settings {data!r}: {exc}") from None


@dataclasses.dataclass(frozen=True)
class Budget:
    """One limit after a request: its size, what is left, and seconds until the bucket is full."""

    limit: int
    remaining: int
    reset_s: float


@dataclasses.dataclass(frozen=True)
class Admission:
    admitted: bool
    #: "requests" and/or "tokens" -> their budget (none while no limit is set).
    budgets: dict[str, Budget]
    #: Refused: seconds until the request would fit.
    retry_after_s: float = 0.0


def openai_headers(budgets: Mapping[str, Budget]) -> dict[str, str]:
    """OpenAI's ``x-ratelimit-*`` headers for ``budgets``."""
    headers: dict[str, str] = {}
    for kind, budget in budgets.items():
        headers[f"x-ratelimit-limit-{kind}"] = str(budget.limit)
        headers[f"x-ratelimit-remaining-{kind}"] = str(budget.remaining)
        headers[f"x-ratelimit-reset-{kind}"] = duration_header(budget.reset_s)
    return headers


def duration_header(seconds: float) -> str:
    """Seconds in OpenAI's reset format: ``"20ms"``, ``"1s"``, ``"1.5s"``, ``"6m0s"``, ``"1h2m3s"``."""
    if seconds < 1:
        return f"{max(0, math.ceil(seconds * 1000))}ms"
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    secs_text = f"{secs:.3f}".rstrip("0").rstrip(".")
    if hours:
        return f"{int(hours)}h{int(minutes)}m{secs_text}s"
    if minutes:
        return f"{int(minutes)}m{secs_text}s"
    return f"{secs_text}s"


@dataclasses.dataclass
class _Bucket:
    limit: float
    refill_s: float  # time to refill from empty
    level: float
    at: float

    def refill(self, now: float) -> None:
        self.level = min(self.limit, self.level + max(0.0, now - self.at) * self.limit / self.refill_s)
        self.at = max(self.at, now)

    def budget(self) -> Budget:
        reset = (self.limit - self.level) * self.refill_s / self.limit
        return Budget(int(self.limit), max(0, math.floor(self.level)), reset)

    def wait_s(self, need: float) -> float:
        """Seconds until ``need`` fits (0: now; never, past the limit: the time to fill up)."""
        missing = min(need, self.limit) - self.level
        return max(0.0, missing * self.refill_s / self.limit)


class ServerRateLimits:
    """The buckets, the arrival log, and the headers of each answer."""

    def __init__(self) -> None:
        self.settings = RateLimitSettings()
        self._buckets: dict[str, _Bucket] = {}
        self.arrivals: deque[dict[str, Any]] = deque(maxlen=ARRIVAL_LOG_SIZE)

    def configure(self, settings: RateLimitSettings) -> None:
        self.settings = settings
        self._buckets = {}
        self.arrivals.clear()
        for kind, limit in (("requests", settings.requests_per_minute), ("tokens", settings.tokens_per_minute)):
            if limit is not None:
                self._buckets[kind] = _Bucket(limit, settings.window_s, float(limit), -math.inf)

    def admit(self, arrival: float, tokens: int) -> Admission:
        """Whether a request that arrived at ``arrival`` with ``tokens`` may be answered, and the
        budgets its answer reports."""
        if not self._buckets:
            return Admission(True, {})
        need = {"requests": 1, "tokens": tokens}
        for bucket in self._buckets.values():
            bucket.refill(arrival)
        fits = all(bucket.level >= need[kind] for kind, bucket in self._buckets.items())
        admitted = fits or not self.settings.enforce
        if admitted:
            for kind, bucket in self._buckets.items():
                bucket.level -= need[kind]  # below zero only when not enforcing
        self.arrivals.append({"t": arrival, "tokens": tokens, "admitted": admitted})
        budgets = {kind: bucket.budget() for kind, bucket in self._buckets.items()}
        wait = 0.0 if admitted else max(bucket.wait_s(need[kind]) for kind, bucket in self._buckets.items())
        return Admission(admitted, budgets, wait)

    def snapshot(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self.settings), "arrivals": list(self.arrivals)}


def add_routes(app: web.Application, limits: ServerRateLimits, error: Any) -> None:
    """The control API; ``error(status, message)`` renders a refused call (400)."""

    async def configure(request: web.Request) -> web.Response:
        try:
            limits.configure(RateLimitSettings.from_json(await request.json()))
        except ValueError as exc:  # also a body that is not JSON
            return error(400, str(exc))
        return web.json_response(dataclasses.asdict(limits.settings))

    async def clear(request: web.Request) -> web.Response:
        limits.configure(RateLimitSettings())
        return web.json_response(dataclasses.asdict(limits.settings))

    async def show(request: web.Request) -> web.Response:
        return web.json_response(limits.snapshot())

    app.add_routes(
        [
            web.post("/_control/rate_limits", configure),
            web.delete("/_control/rate_limits", clear),
            web.get("/_control/rate_limits", show),
        ]
    )


def max_in_any_window(arrivals: list[Mapping[str, Any]], window_s: float = 60.0) -> tuple[int, int]:
    """(most requests, most tokens) of admitted arrivals inside any half-open window of
    ``window_s`` seconds: what a test compares with the limits."""
    admitted = sorted((a["t"], a["tokens"]) for a in arrivals if a["admitted"])
    most_requests = most_tokens = tokens = start = 0
    for end, (t_end, tokens_end) in enumerate(admitted):
        tokens += tokens_end
        while admitted[start][0] <= t_end - window_s:
            tokens -= admitted[start][1]
            start += 1
        most_requests = max(most_requests, end - start + 1)
        most_tokens = max(most_tokens, tokens)
    return most_requests, most_tokens
