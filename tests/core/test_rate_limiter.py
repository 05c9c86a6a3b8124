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
    # On a clock the test moves (a tenth of the window per request, one request at a time) nothing
    # leaves the window before the tenth: every request past the third is let in by the reserves
    # that earlier replies gave back (to the window and to the pace).
    moved = [0.0]
    stepped = RateLimiter(None, limit, window_s=WINDOW, clock=lambda: moved[0])

    async def one_by_one():
        async with aiohttp.ClientSession() as session:
            statuses = []
            for i in range(10):
                moved[0] += WINDOW / 10 * 0.99
                statuses.append(await asyncio.wait_for(send(stepped, session, server.base_url, body(i)), 30))
            return statuses

    assert asyncio.run(one_by_one()) == [200] * 10, "after each reply only its real usage stays reserved"


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


def paced(limiter_of, n: int, tokens: int, *, concurrency: int = 16, hold_s: float = 0.02) -> list[float]:
    """When each of ``n`` requests (``concurrency`` at once, each held ``hold_s``) was admitted,
    on the limiter's own clock (the event loop's)."""

    async def main():
        limiter = limiter_of(asyncio.get_running_loop().time)
        gate = asyncio.Semaphore(concurrency)
        times = []

        async def one():
            async with gate:
                ticket = await limiter.acquire(tokens)
                times.append(ticket.admitted_at)
                await asyncio.sleep(hold_s)
                limiter.release(ticket, tokens)

        await asyncio.gather(*(one() for _ in range(n)))
        return sorted(times)

    return asyncio.run(main())


def most_over_pace(times: list[float], rate: float, amount: float = 1) -> float:
    """The largest ``amount * count - rate * span`` over every run of admissions: the burst seen."""
    return max(
        (j - i + 1) * amount - rate * (times[j] - times[i]) for i in range(len(times)) for j in range(i, len(times))
    )


def test_requests_are_paced_evenly_after_a_small_burst():
    """max_requests_per_minute 120 (here per 2 s window: the same arithmetic, 30x faster) with 16
    allowed in flight: 6 at once (5%), then one every 1/60 s; never 60 at once."""
    times = paced(lambda clock: RateLimiter(120, None, window_s=2.0, clock=clock), 60, 1)
    assert most_over_pace(times, 60.0) <= 6 + 1e-6
    assert sum(t <= times[0] + 0.3 * 2 / 60 for t in times) <= 6  # the 0.3 s, scaled


def test_tokens_are_paced_evenly_and_the_burst_is_at_least_one():
    times = paced(lambda clock: RateLimiter(None, 4000, window_s=2.0, clock=clock), 40, 100)
    assert most_over_pace(times, 2000.0, 100) <= 200 + 1e-6  # burst: 5% of 4,000 tokens
    times = paced(lambda clock: RateLimiter(10, None, window_s=1.0, clock=clock), 12, 1)
    assert most_over_pace(times, 10.0) <= 1 + 1e-6  # 5% of 10 is below 1: a burst of one


def test_a_request_larger_than_the_burst_waits_for_a_full_bucket_and_is_paid_back():
    times = paced(lambda clock: RateLimiter(None, 4000, window_s=2.0, clock=clock), 8, 500)
    assert most_over_pace(times, 2000.0, 500) <= 500 + 1e-6  # the bound is that request's size
    assert times[-1] - times[0] >= 7 * 500 / 2000 - 1e-6


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
