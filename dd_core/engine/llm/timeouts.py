"""How long one request may take, told apart: no connection, no reply yet, a reply gone silent.

A slow reply is not a dead server: reasoning models, long documents and busy GPUs make replies of
minutes normal (1,500 tokens at 20 tokens/s is 75 s), and the same request sent again takes the
same time. So each way of waiting has its own limit, every default chosen so that a healthy
server writing a long reply is never cut (the README's table says why each is what it is):

- ``connect_timeout_s`` (10 s): opening the connection (TCP and TLS). A server that is up accepts
  within milliseconds; past this it is down or unreachable, and nothing was sent (nothing billed).
- ``timeout_s`` (600 s, as OpenAI's and Anthropic's own clients): for the reply to begin. Streamed,
  that is its first chunk: the request's wait in the server's queue and its prompt. Not streamed,
  the whole reply (a reply that is not streamed begins when it ends).
- ``idle_timeout_s`` (120 s): a streamed reply's silence between two chunks. A server writing
  sends a chunk per token, many a second (a 135M model on two cores that are busy with other work
  still wrote 4 a second); two minutes of nothing is a stalled stream.
- a streamed reply's whole time: at most ``timeout_s`` plus 10 s per ``max_tokens`` (a server
  slower than a token every 10 s is broken, not busy; it bounds a server that sends keep-alives
  but never ends); no cap without ``max_tokens``.

``ReplyClock`` keeps a streamed reply's deadlines: the first chunk's, then the next chunk's,
moved at most once a second (not on every chunk) within the cap.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace

import aiohttp

from dd_core.config.models import ModelConfig

#: A streamed reply slower than this per token is broken, not busy (the cap's rate). SmolLM2-135M on
#: two cores loaded twentyfold still wrote 0.86 tokens/s per slot: a healthy server may be slow.
SLOWEST_TOKEN_S = 10.0
#: A streamed reply's idle deadline moves only when it would move by more than this.
_RESCHEDULE_S = 1.0


@dataclass(frozen=True)
class Timeouts:
    connect_s: float
    first_byte_s: float
    idle_s: float
    max_tokens: int | None = None

    @classmethod
    def of(cls, model: ModelConfig, timeout_s: float) -> Timeouts:
        """The model's timeouts; ``timeout_s`` may be the run's override of the model's."""
        return cls(model.connect_timeout_s, timeout_s, model.idle_timeout_s, model.max_tokens)

    def longer(self, factor: float) -> Timeouts:
        """The same with ``factor`` times as long for the reply to begin (and so to end)."""
        return replace(self, first_byte_s=self.first_byte_s * factor)

    def cap_s(self) -> float | None:
        """The longest a streamed reply may take in all (None: no cap)."""
        return None if self.max_tokens is None else self.first_byte_s + self.max_tokens * SLOWEST_TOKEN_S

    def client_timeout(self, *, streaming: bool) -> aiohttp.ClientTimeout:
        """aiohttp's part: the connection, and the whole of a reply that is not streamed (a streamed
        reply's deadlines are a ``ReplyClock``'s)."""
        return aiohttp.ClientTimeout(
            total=None if streaming else self.first_byte_s, sock_connect=self.connect_s, connect=None
        )


class ReplyClock:
    """The deadlines of one streamed reply, as an ``asyncio.timeout_at`` it moves: the first chunk
    within ``first_byte_s``, each next within ``idle_s``, all of it within the cap.
    ``phase`` says which one ran out."""

    def __init__(self, timeouts: Timeouts):
        self._loop = asyncio.get_running_loop()
        self.started = self._loop.time()
        self._timeouts = timeouts
        cap = timeouts.cap_s()
        self._end = None if cap is None else self.started + cap
        self.phase = "first_byte"
        self.context = asyncio.timeout_at(self._bounded(self.started + timeouts.first_byte_s))

    def _bounded(self, deadline: float) -> float:
        return deadline if self._end is None else min(deadline, self._end)

    def heard(self) -> None:
        """A chunk arrived: the next one is due ``idle_s`` from now."""
        now = self._loop.time()
        deadline = self._bounded(now + self._timeouts.idle_s)
        if self.phase == "first_byte":
            self.phase = "idle"
            self.context.reschedule(deadline)
        elif deadline - self.context.when() > _RESCHEDULE_S:
            self.context.reschedule(deadline)
        if self._end is not None and deadline >= self._end:
            self.phase = "cap"

    def elapsed(self) -> float:
        return self._loop.time() - self.started
