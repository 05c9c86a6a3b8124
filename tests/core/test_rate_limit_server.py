"""The test server's requests/tokens-per-minute limits and OpenAI's x-ratelimit-* headers."""

from __future__ import annotations

import time

import httpx
import pytest

from dd_core.testing.llm_server import OpenAIServer
from dd_core.testing.llm_server.rate_limits import (
    RateLimitSettings,
    ServerRateLimits,
    duration_header,
    max_in_any_window,
    openai_headers,
)


def chat(content: str = "Say hi.") -> dict:
    return {"model": "test-model", "messages": [{"role": "user", "content": content}]}


@pytest.fixture(scope="module")
def server():
    with OpenAIServer() as running:
        yield running


@pytest.fixture(autouse=True)
def fresh(server):
    server.clear_rate_limits()


@pytest.fixture
def http(server):
    with httpx.Client(base_url=server.base_url, trust_env=False, timeout=30) as client:
        yield client


def test_no_headers_while_no_limit_is_set(http):
    response = http.post("/chat/completions", json=chat())
    assert response.status_code == 200 and not [h for h in response.headers if h.startswith("x-ratelimit")]


def test_request_limit_answers_429_with_openai_headers(server, http):
    server.set_rate_limits(requests_per_minute=3)
    answers = [http.post("/chat/completions", json=chat()) for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert [a.headers["x-ratelimit-remaining-requests"] for a in answers] == ["2", "1", "0", "0"]
    assert answers[0].headers["x-ratelimit-limit-requests"] == "3"
    assert answers[3].json()["error"]["code"] == "rate_limit_exceeded"
    reset = answers[3].headers["x-ratelimit-reset-requests"]
    assert reset.endswith("s") and reset.startswith(("59", "1m0s")), reset
    assert "x-ratelimit-limit-tokens" not in answers[0].headers


def test_token_limit_counts_the_replies_usage(server, http):
    first = http.post("/chat/completions", json=chat("one two three")).json()["usage"]["total_tokens"]
    server.set_rate_limits(tokens_per_minute=first * 2)
    answers = [http.post("/chat/completions", json=chat("one two three")) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert answers[1].headers["x-ratelimit-remaining-tokens"] == "0"
    assert answers[0].headers["x-ratelimit-remaining-tokens"] == str(first)


def test_window_slides(server, http):
    # 2 per 4 s: a request's worth comes back every 2 s, far longer than three requests take
    # even on a busy machine; after waiting that long, one more is let in.
    server.set_rate_limits(requests_per_minute=2, window_s=4)
    assert [http.post("/chat/completions", json=chat()).status_code for _ in range(3)] == [200, 200, 429]
    time.sleep(2.05)
    assert http.post("/chat/completions", json=chat()).status_code == 200


def test_count_only_mode_logs_every_arrival(server, http):
    server.set_rate_limits(requests_per_minute=1, enforce=False)
    assert [http.post("/chat/completions", json=chat()).status_code for _ in range(3)] == [200] * 3
    log = server.rate_limit_log()
    assert len(log["arrivals"]) == 3 and all(a["admitted"] and a["tokens"] > 0 for a in log["arrivals"])
    assert max_in_any_window(log["arrivals"])[0] == 3


def test_max_in_any_window_uses_half_open_windows():
    arrivals = [{"t": t, "tokens": 10, "admitted": True} for t in (0.0, 30.0, 60.0, 60.5, 119.0)]
    assert max_in_any_window(arrivals) == (3, 30)  # 60.0, 60.5, 119.0 (0.0 is out of (59, 119])
    assert max_in_any_window([{"t": 0.0, "tokens": 5, "admitted": False}]) == (0, 0)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.02, "20ms"), (0.0001, "1ms"), (1, "1s"), (1.5, "1.5s"), (59.9994, "59.999s"), (360, "6m0s"), (3723, "1h2m3s")],
)
def test_reset_durations_in_openai_format(seconds, text):
    assert duration_header(seconds) == text


def test_buckets_refill_evenly_and_headers_say_when_they_are_full():
    limits = ServerRateLimits()
    limits.configure(RateLimitSettings(requests_per_minute=2, tokens_per_minute=120))
    first = limits.admit(0.0, 60)
    assert first.admitted and openai_headers(first.budgets) == {
        "x-ratelimit-limit-requests": "2", "x-ratelimit-remaining-requests": "1", "x-ratelimit-reset-requests": "30s",
        "x-ratelimit-limit-tokens": "120", "x-ratelimit-remaining-tokens": "60", "x-ratelimit-reset-tokens": "30s",
    }  # fmt: skip
    too_many = limits.admit(1.0, 70)
    assert not too_many.admitted  # 62 tokens in the bucket
    assert too_many.retry_after_s == pytest.approx(4.0)  # 8 more tokens at 2 a second
    assert limits.admit(5.0, 70).admitted  # refilled 2 tokens a second
    refused = limits.admit(5.0, 1)
    assert not refused.admitted and openai_headers(refused.budgets)["x-ratelimit-remaining-requests"] == "0"
    assert [a["admitted"] for a in limits.snapshot()["arrivals"]] == [True, False, True, False]


@pytest.mark.parametrize("bad", [{"requests_per_minute": 0}, {"tokens_per_minute": 1.5}, {"window_s": -1}, {"rpm": 3}])
def test_bad_settings_are_rejected(server, bad):
    with pytest.raises(ValueError):
        server.set_rate_limits(**bad)
