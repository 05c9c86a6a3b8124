"""Requests and tokens per minute: paced evenly, and never more than a model's limits in ANY 60 s window.

Providers enforce per-minute limits over sub-minute slices (OpenAI documents 60,000 requests per
minute enforced as 1,000 per second) and answer a burst with 429s, so letting a minute's worth out
at once is as bad as passing the limit. Two rules hold together, for requests and for tokens:

- **pace**: over any window of t seconds at most ``burst + rate * t`` start, where ``rate`` is the
  limit per second and ``burst`` is ``BURST_SHARE`` (5%) of the per-minute limit, at least 1
  (120 requests per minute: 6 at once, then one every 0.5 s). A bucket of ``burst`` refilled at
  ``rate``; a single request of more tokens than the burst waits for a full bucket and runs it
  into debt, so for tokens the bound is ``max(burst, that request) + rate * t``;
- **window**: a sliding window rather than a token bucket alone (a bucket of capacity B refilled
  at r per second lets B + 60 r through in one minute): a request occupies the window from the
  moment it is admitted until ``window_s`` after its reply (or failure) came back: it reached the
  server somewhere in between, so whatever the network delay, the server never counts more than
  the limit in any window of its own clock.

Tokens are reserved before sending from an upper bound (the serialised body's length in bytes,
which no tokenizer's count of the prompt exceeds, plus ``max_tokens``) and corrected down to the
reply's usage when it arrives (the difference goes back to the pace and out of the window). The
``x-ratelimit-*`` headers a server sends lower the pace further: with ``remaining`` of ``limit``
left and a ``reset`` after which the server is back to full, the server is assumed to regain
capacity evenly over the reset time.

Waiters are admitted strictly in priority order (oldest row group first), so a large request is
never starved by small ones.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import re
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

WINDOW_S = 60.0
#: The burst a pace allows: this share of the per-minute limit (at least 1 request or token).
BURST_SHARE = 0.05
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNIT_S = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


class RequestTooLarge(ValueError):
    """A request needs more tokens than the per-minute limit allows at all."""


def request_tokens(payload: bytes, max_tokens: int | None) -> int:
    """Tokens to reserve for a request: an upper bound of its prompt plus its reply."""
    return len(payload) + (max_tokens or 0)


def parse_duration(text: str) -> float | None:
    """``"1s"``, ``"6m0s"``, ``"20ms"``, ``"1h2m3.5s"`` (OpenAI's reset format), or plain seconds."""
    text = text.strip()
    try:
        seconds = float(text)
    except ValueError:
        parts = _DURATION_PART.findall(text)
        if not parts or "".join(n + u for n, u in parts) != text:
            return None
        seconds = sum(float(number) * _UNIT_S[unit] for number, unit in parts)
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


@dataclass
class Ticket:
    """One admitted request's place in the window."""

    tokens: int
    #: When it was admitted, on the limiter's clock.
    admitted_at: float = 0.0
    done: bool = False


@dataclass
class _ServerBudget:
    """What the server's last headers said about one limit: capacity regained evenly until reset."""

    limit: float
    remaining: float
    observed: float
    reset_s: float
    spent: float = 0.0

    def wait_s(self, need: float, now: float) -> float:
        if self.reset_s <= 0 or self.limit <= self.remaining or now - self.observed >= self.reset_s:
            return 0.0  # full again (or the news is older than the reset)
        rate = (self.limit - self.remaining) / self.reset_s
        available = min(self.limit, self.remaining + rate * (now - self.observed)) - self.spent
        return 0.0 if available >= min(need, self.limit) else (min(need, self.limit) - available) / rate


@dataclass
class _Pace:
    """One limit paced evenly: a bucket of ``burst`` refilled at ``rate`` per second."""

    rate: float
    burst: float
    level: float
    at: float

    @classmethod
    def of(cls, per_window: float, window_s: float, now: float) -> _Pace:
        burst = max(1.0, math.floor(BURST_SHARE * per_window))
        return cls(per_window / window_s, burst, burst, now)

    def _refill(self, now: float) -> None:
        if now > self.at:
            self.level = min(self.burst, self.level + (now - self.at) * self.rate)
            self.at = now

    def wait_s(self, need: float, now: float) -> float:
        self._refill(now)
        want = min(need, self.burst)  # a request larger than the burst waits for a full bucket
        short = want - self.level
        return 0.0 if short <= 1e-9 * want else short / self.rate

    def take(self, amount: float, now: float) -> None:
        self._refill(now)
        self.level -= amount

    def give_back(self, amount: float, now: float) -> None:
        self._refill(now)
        self.level = min(self.burst, self.level + amount)


@dataclass(order=True)
class _Waiter:
    priority: tuple
    order: int
    tokens: int = field(compare=False)
    future: asyncio.Future = field(compare=False)


class RateLimiter:
    def __init__(
        self,
        requests_per_minute: float | None,
        tokens_per_minute: float | None,
        *,
        window_s: float = WINDOW_S,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.requests_per_minute = requests_per_minute
        self.tokens_per_minute = tokens_per_minute
        self.window_s = window_s
        self._clock = clock
        self._open_requests = 0
        self._open_tokens = 0
        self._closed: deque[tuple[float, int]] = deque()  # (leaves the window at, tokens), in order
        self._closed_tokens = 0
        self._server: dict[str, _ServerBudget] = {}
        now = clock()
        self._paces = {
            kind: _Pace.of(limit, window_s, now)
            for kind, limit in (("requests", requests_per_minute), ("tokens", tokens_per_minute))
            if limit is not None
        }
        self._waiters: list[_Waiter] = []
        self._order = itertools.count()
        self._timer: asyncio.TimerHandle | None = None
        #: Seconds admissions waited in total (for usage reports).
        self.waited_s = 0.0

    async def acquire(self, tokens: int, priority: tuple = ()) -> Ticket:
        """Wait until one more request of ``tokens`` fits every limit; hold it until ``release``."""
        if self.tokens_per_minute is not None and tokens > self.tokens_per_minute:
            raise RequestTooLarge(
                f"a request may need {tokens:,} tokens (prompt bound + max_tokens), more than max_tokens_per_minute "
                f"= {self.tokens_per_minute:,}; raise the limit or lower max_tokens"
            )
        if not self._waiters and self._wait_s(tokens) == 0:
            return self._admit(tokens)
        waiter = _Waiter(priority, next(self._order), tokens, asyncio.get_running_loop().create_future())
        heapq.heappush(self._waiters, waiter)
        started = self._clock()
        self._wake()
        try:
            return await waiter.future
        except asyncio.CancelledError:
            if waiter.future.done() and not waiter.future.cancelled():
                self.release(waiter.future.result())  # admitted just before the cancel: give it back
            else:
                self._waiters.remove(waiter)
                heapq.heapify(self._waiters)
                self._wake()
            raise
        finally:
            self.waited_s += self._clock() - started

    def release(self, ticket: Ticket, used_tokens: int | None = None) -> None:
        """The request is over: it leaves the window ``window_s`` from now, counting ``used_tokens``
        (the reply's usage) instead of its reservation when known."""
        if ticket.done:
            return
        ticket.done = True
        self._open_requests -= 1
        self._open_tokens -= ticket.tokens
        tokens = ticket.tokens if used_tokens is None else max(0, min(used_tokens, ticket.tokens))
        now = self._clock()
        if tokens < ticket.tokens and "tokens" in self._paces:
            self._paces["tokens"].give_back(ticket.tokens - tokens, now)
        self._closed.append((now + self.window_s, tokens))
        self._closed_tokens += tokens
        self._wake()

    def observe(self, headers: Mapping[str, str]) -> None:
        """Take in a reply's ``x-ratelimit-{limit,remaining,reset}-{requests,tokens}`` headers."""
        now = self._clock()
        for kind in ("requests", "tokens"):
            try:
                limit = float(headers[f"x-ratelimit-limit-{kind}"])
                remaining = float(headers[f"x-ratelimit-remaining-{kind}"])
                reset_s = parse_duration(headers[f"x-ratelimit-reset-{kind}"])
            except (KeyError, ValueError):
                continue
            if (
                reset_s is None
                or not (math.isfinite(limit) and math.isfinite(remaining))
                or limit <= 0
                or remaining < 0
            ):
                continue
            self._server[kind] = _ServerBudget(limit, min(remaining, limit), now, reset_s)

    # --- internals -------------------------------------------------------------------

    def _admit(self, tokens: int) -> Ticket:
        self._open_requests += 1
        self._open_tokens += tokens
        now = self._clock()
        for kind, amount in (("requests", 1), ("tokens", tokens)):
            if kind in self._server:
                self._server[kind].spent += amount
            if kind in self._paces:
                self._paces[kind].take(amount, now)
        return Ticket(tokens, now)

    def _wait_s(self, tokens: int) -> float | None:
        """Seconds until a request of ``tokens`` fits (0: now), None: only a release can make room."""
        now = self._clock()
        while self._closed and self._closed[0][0] <= now:
            self._closed_tokens -= self._closed.popleft()[1]
        need = {"requests": 1, "tokens": tokens}
        waits = [budget.wait_s(need[kind], now) for kind, budget in self._server.items()]
        waits += [pace.wait_s(need[kind], now) for kind, pace in self._paces.items()]
        if self.requests_per_minute is not None:
            excess = self._open_requests + len(self._closed) + 1 - self.requests_per_minute
            waits.append(self._until_freed(excess, lambda _: 1, now))
        if self.tokens_per_minute is not None:
            excess = self._open_tokens + self._closed_tokens + tokens - self.tokens_per_minute
            waits.append(self._until_freed(excess, lambda entry: entry[1], now))
        if any(w is None for w in waits):
            return None
        return max(waits, default=0.0)

    def _until_freed(self, excess: float, size: Callable[[tuple[float, int]], int], now: float) -> float | None:
        if excess <= 0:
            return 0.0
        freed = 0
        for entry in self._closed:
            freed += size(entry)
            if freed >= excess:
                return entry[0] - now
        return None

    def _wake(self) -> None:
        """Admit waiters from the head while they fit; else set a timer for when the head will."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        while self._waiters:
            head = self._waiters[0]
            if head.future.done():
                heapq.heappop(self._waiters)
                continue
            wait = self._wait_s(head.tokens)
            if wait is None:
                return  # a release will call again
            if wait > 0:
                self._timer = asyncio.get_running_loop().call_later(wait, self._wake)
                return
            heapq.heappop(self._waiters)
            head.future.set_result(self._admit(head.tokens))
