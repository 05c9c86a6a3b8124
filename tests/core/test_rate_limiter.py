"""The requests/tokens-per-minute limiter, counted at the real local server.

The window is scaled down to 1 s on both sides (same arithmetic as 60 s) to keep these short; the
acceptance test through the engine uses the real 60 s window.
"""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

from dd_core.engine.llm.rate_limiter import RateLimiter, RequestTooLarge, parse_duration, request_tokens
from dd_core.engine.llm.wire import serialise
from dd_core.testing.llm_server import OpenAIServer
from dd_core.testing.llm_server.rate_limits import max_in_any_window

WINDOW = 1.0


@pytest.fixture(scope="module")
def server():
    with OpenAIServer(latency_ms=20, jitter_ms=30) as running:
        yield running


@pytest.fixture(autouse=True)
def fresh(server):
    server.clear_rate_limits()


def body(i: int, max_tokens: int = 20) -> dict:
    return {
        "model": "test-model",
        "messages": [{"role": "user", "content": f"Say something about {i} please."}],
        "max_tokens": max_tokens,
        "seed": i,
    }


async def send(
    limiter: RateLimiter, session: aiohttp.ClientSession, url: str, request: dict, *, observe: bool = True
) -> int:
    payload = serialise(request)
    ticket = await limiter.acquire(request_tokens(payload, request.get("max_tokens")))
    used = None
    try:
        async with session.post(
            url + "/chat/completions", data=payload, headers={"Content-Type": "application/json"}
        ) as response:
            data = await response.json()
            if observe:
                limiter.observe(response.headers)
            if response.status == 200:
                used = data["usage"]["total_tokens"]
            return response.status
    finally:
        limiter.release(ticket, used)


def burst(
    server, limiter: RateLimiter, n: int, *, observe: bool = True, concurrency: int = 8, timeout_s: float | None = None
) -> tuple[list[int], float]:
    async def main():
        gate = asyncio.Semaphore(concurrency)
        async with aiohttp.ClientSession() as session:

            async def one(i):
                async with gate:
                    return await send(limiter, session, server.base_url, body(i), observe=observe)

            started = time.monotonic()
            statuses = await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(n))), timeout_s)
            return statuses, time.monotonic() - started

    return asyncio.run(main())


def test_requests_per_window_never_exceed_the_limit(server):
    server.set_rate_limits(requests_per_minute=5, window_s=WINDOW, enforce=False)  # count everything sent
    statuses, seconds = burst(server, RateLimiter(5, None, window_s=WINDOW), 16)
    most, _ = max_in_any_window(server.rate_limit_log()["arrivals"], WINDOW)
    assert statuses == [200] * 16 and most <= 5
    assert seconds >= 3 * WINDOW, "16 requests at 5 per window need at least 3 more windows"


def test_tokens_per_window_never_exceed_the_limit_and_replies_give_back_the_reserve(server):
    one = request_tokens(serialise(body(0)), 20)
    limit = 3 * one  # the reservation bound lets 3 in; the real usage is far smaller
    server.set_rate_limits(tokens_per_minute=limit, window_s=WINDOW, enforce=False)
    statuses, _ = burst(server, RateLimiter(None, limit, window_s=WINDOW), 30)
    arrivals = server.rate_limit_log()["arrivals"]
    _, most_tokens = max_in_any_window(arrivals, WINDOW)
    assert statuses == [200] * 30 and most_tokens <= limit
    # With the limiter's clock stopped nothing ever leaves its window: every request past the
    # third is let in by the reserves that earlier replies gave back.
    stopped = RateLimiter(None, limit, window_s=WINDOW, clock=lambda: 0.0)
    statuses, _ = burst(server, stopped, 10, timeout_s=30)
    assert statuses == [200] * 10, "after each reply only its real usage stays reserved"


def test_with_a_server_that_enforces_the_same_limits_nothing_is_refused(server):
    server.set_rate_limits(requests_per_minute=6, tokens_per_minute=400, window_s=WINDOW)
    statuses, _ = burst(server, RateLimiter(6, 400, window_s=WINDOW), 18)
    assert statuses == [200] * 18
    assert all(a["admitted"] for a in server.rate_limit_log()["arrivals"])


def test_the_servers_headers_alone_slow_the_client_down(server):
    # Blind, against the real 60 s window: the server lets 4 in, then one every 15 s, so the
    # count does not depend on how fast this machine sends 20 requests.
    server.set_rate_limits(requests_per_minute=4)
    blind, _ = burst(server, RateLimiter(None, None), 20, observe=False, concurrency=1)
    # Guided by the headers, against the 1 s window (or it would take 4 minutes): however slowly
    # requests go out, a client that follows the headers is not refused more.
    server.set_rate_limits(requests_per_minute=4, window_s=WINDOW)
    guided, _ = burst(server, RateLimiter(None, None), 20, observe=True, concurrency=1)
    assert blind.count(429) >= 12, blind
    assert guided.count(429) <= 2, guided


def test_waiters_are_admitted_in_priority_order():
    async def main():
        limiter = RateLimiter(1, None, window_s=0.2)
        first = await limiter.acquire(1)
        order = []

        async def waiter(priority):
            ticket = await limiter.acquire(1, priority)
            order.append(priority)
            limiter.release(ticket)

        tasks = [asyncio.ensure_future(waiter((p,))) for p in (3, 1, 2)]
        await asyncio.sleep(0.01)
        limiter.release(first)
        await asyncio.gather(*tasks)
        return order

    assert asyncio.run(main()) == [(1,), (2,), (3,)]


def test_a_big_request_is_not_starved_by_small_ones():
    async def main():
        limiter = RateLimiter(None, 100, window_s=0.2)
        held = await limiter.acquire(60)
        big = asyncio.ensure_future(limiter.acquire(80, (0,)))
        small = asyncio.ensure_future(limiter.acquire(10, (1,)))
        await asyncio.sleep(0.01)
        assert not small.done(), "the small one waits behind the big one ahead of it"
        limiter.release(held, 60)
        big_ticket = await big
        limiter.release(big_ticket, 5)
        await small

    asyncio.run(main())


def test_a_request_larger_than_the_limit_is_refused_with_a_reason():
    async def main():
        with pytest.raises(RequestTooLarge, match="more than max_tokens_per_minute"):
            await RateLimiter(None, 100).acquire(101)

    asyncio.run(main())


def test_a_cancelled_waiter_gives_its_place_back():
    async def main():
        limiter = RateLimiter(1, None, window_s=0.1)
        held = await limiter.acquire(1)
        waiting = asyncio.ensure_future(limiter.acquire(1))
        await asyncio.sleep(0.01)
        waiting.cancel()
        await asyncio.gather(waiting, return_exceptions=True)
        limiter.release(held)
        await asyncio.wait_for(limiter.acquire(1), 30)  # not blocked by the cancelled one (0.1 s, with the window)

    asyncio.run(main())


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1s", 1),
        ("6m0s", 360),
        ("20ms", 0.02),
        ("1h2m3.5s", 3723.5),
        ("0.5", 0.5),
        ("", None),
        ("soon", None),
        ("1x", None),
        ("-1", None),
        ("inf", None),
        ("1s2", None),
    ],
)
def test_reset_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "headers",
    [
        {
            "x-ratelimit-limit-requests": "nan",
            "x-ratelimit-remaining-requests": "0",
            "x-ratelimit-reset-requests": "1s",
        },
        {
            "x-ratelimit-limit-requests": "10",
            "x-ratelimit-remaining-requests": "-4",
            "x-ratelimit-reset-requests": "1s",
        },
        {
            "x-ratelimit-limit-requests": "10",
            "x-ratelimit-remaining-requests": "0",
            "x-ratelimit-reset-requests": "later",
        },
        {
            "x-ratelimit-limit-requests": "1e400",
            "x-ratelimit-remaining-requests": "0",
            "x-ratelimit-reset-requests": "1s",
        },
        {"x-ratelimit-remaining-requests": "0"},
    ],
)
def test_nonsense_headers_are_ignored(headers):
    async def main():
        # The limiter's clock is stopped: a wait the headers imposed would never end.
        limiter = RateLimiter(None, None, clock=lambda: 0.0)
        limiter.observe(headers)
        await asyncio.wait_for(limiter.acquire(1), 30)

    asyncio.run(main())
