"""Faults the server injects: the rules set through ``/_control/faults``, and what each kind of
fault does to the answer (rendered by the request's protocol where the answer has a shape)."""

from __future__ import annotations

import asyncio
import dataclasses
import random
from collections.abc import Sequence
from typing import Any

from aiohttp import web

from dd_core.testing.llm_server.protocol import ChatProtocol, ChatRequest

FAULT_KINDS = ("status", "hang", "hold", "malformed_json", "invalid_structured", "disconnect", "raw")


@dataclasses.dataclass
class FaultRule:
    """One injectable fault, given to the control API as a JSON object with these fields.

    ``kind``: ``status`` (answer ``status`` with an error body in the protocol's shape, plus a
    ``Retry-After`` header when ``retry_after`` seconds is set), ``hang`` (wait
    ``hang_s`` seconds, then answer normally), ``hold`` (wait until the test releases the rule's
    ``name`` through ``POST /_control/release``, then answer normally; with slots a held request
    occupies its slot; ``held`` in the stats counts the requests waiting at each name; replacing
    or clearing the rules releases them all), ``malformed_json`` (200 with a body that
    is not JSON), ``invalid_structured`` (200 whose content fails the requested
    format), ``disconnect`` (close the connection without answering), ``raw`` (answer
    ``status`` (200-599) with ``headers`` and ``body`` repeated ``repeat`` times, where
    ``{echo}`` in the body is replaced by the request's ``echo_header``: a misbehaving server
    of any kind, e.g. one that echoes the Authorization header back).

    A request matches when ``match`` occurs in some message content and ``model``
    equals the request's model (each only if set). Of the matching requests, the rule
    applies to every ``every``-th one, with probability ``probability`` (drawn from
    ``random.Random(seed)``), and to at most ``times`` of them in total.
    """

    kind: str
    status: int = 500
    retry_after: float | None = None
    hang_s: float = 3600.0
    name: str = "hold"
    match: str | None = None
    model: str | None = None
    times: int | None = None
    every: int | None = None
    probability: float | None = None
    seed: int = 0
    headers: dict[str, str] | None = None
    body: str = ""
    repeat: int = 1
    echo_header: str | None = None
    matched: int = dataclasses.field(default=0, init=False)
    applied: int = dataclasses.field(default=0, init=False)

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; expected one of {FAULT_KINDS}")
        if not (200 if self.kind == "raw" else 400) <= self.status <= 599:
            raise ValueError(f"fault status must be 4xx or 5xx (200-599 for raw), got {self.status}")
        if not 1 <= self.repeat <= 2**28:
            raise ValueError("'repeat' must be between 1 and 2**28")
        if self.every is not None and self.every < 1:
            raise ValueError("'every' must be at least 1")
        if self.times is not None and self.times < 0:
            raise ValueError("'times' must not be negative")
        if self.probability is not None and not 0 <= self.probability <= 1:
            raise ValueError("'probability' must be between 0 and 1")
        if not isinstance(self.name, str) or not self.name:
            raise ValueError("'name' must be a non-empty string")
        self._rng = random.Random(self.seed)

    @classmethod
    def from_json(cls, data: Any) -> FaultRule:
        if not isinstance(data, dict):
            raise ValueError(f"a fault rule must be a JSON object, got {data!r}")
        try:
            return cls(**data)
        except TypeError as exc:
            raise ValueError(f"bad fault rule {data!r}: {exc}") from None

    def applies(self, model: str, texts: Sequence[str]) -> bool:
        """Whether the rule fires for this request; counts it when it matches."""
        if self.model is not None and model != self.model:
            return False
        if self.match is not None and not any(self.match in text for text in texts):
            return False
        self.matched += 1
        if self.times is not None and self.applied >= self.times:
            return False
        if self.every is not None and self.matched % self.every:
            return False
        if self.probability is not None and self._rng.random() >= self.probability:
            return False
        self.applied += 1
        return True


class Faults:
    """The rules in force, in order; the first one that applies to a request is injected.

    A ``hold`` rule keeps the requests it picks until the test releases its name: tests order
    events with it instead of racing a timer (hold a request, wait until what must happen
    meanwhile has happened, release it).
    """

    def __init__(self) -> None:
        self.rules: list[FaultRule] = []
        #: Hold rule name -> released.
        self.holds: dict[str, asyncio.Event] = {}

    def pick(self, model: str, texts: Sequence[str]) -> FaultRule | None:
        return next((rule for rule in self.rules if rule.applies(model, texts)), None)

    def replace(self, rules: list[FaultRule]) -> None:
        """New rules: what the old hold rules held goes on; the new ones' holds start closed."""
        for released in self.holds.values():
            released.set()
        self.rules = rules
        self.holds = {rule.name: asyncio.Event() for rule in rules if rule.kind == "hold"}

    def release(self, name: str | None) -> list[str]:
        """Let the requests held by hold rule ``name`` (every hold rule's: None) go on, and the
        ones it picks from now on; returns the names released. KeyError for an unknown name."""
        names = sorted(self.holds) if name is None else [name]
        for each in names:
            self.holds[each].set()
        return names

    def hold_of(self, rule: FaultRule | None) -> asyncio.Event | None:
        """The event a request picked by ``rule`` waits for, when ``rule`` holds and is not released."""
        if rule is None or rule.kind != "hold" or self.holds[rule.name].is_set():
            return None
        return self.holds[rule.name]


async def faulty_answer(
    rule: FaultRule, request: web.Request, chat: ChatRequest, content: str, protocol: ChatProtocol
) -> web.StreamResponse:
    """The answer ``rule`` gives instead of (or, for ``hang``, after delaying) the completion ``content``."""
    if rule.kind == "status":
        headers = None if rule.retry_after is None else {"Retry-After": _seconds_header(rule.retry_after)}
        return protocol.error(rule.status, f"Injected fault: HTTP {rule.status}.", headers)
    if rule.kind == "hang":
        await asyncio.sleep(rule.hang_s)
        return protocol.completion(chat, content)
    if rule.kind == "malformed_json":
        return protocol.malformed()
    if rule.kind == "invalid_structured":
        return protocol.completion(chat, protocol.invalid_content(chat))
    if rule.kind == "raw":
        echo = request.headers.get(rule.echo_header, "") if rule.echo_header else ""
        text = rule.body.replace("{echo}", echo) * rule.repeat
        headers = {"Content-Type": "application/json", **(rule.headers or {})}
        return web.Response(status=rule.status, body=text.encode(), headers=headers)
    # "disconnect": close the socket; aiohttp then fails to write this response and drops it.
    request.protocol.force_close()
    return web.Response()


def _seconds_header(seconds: float) -> str:
    return str(int(seconds)) if float(seconds).is_integer() else str(seconds)
