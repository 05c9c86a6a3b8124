"""What a model's calls cost: tokens paid for (online and through batches) times its prices.

Only configured prices are used; a model without ``price`` has no cost (``None``), never an
estimate from some table. Batch requests are charged ``1 - batch_discount`` of the online price.
Requests abandoned after they reached the server count as possibly billed, at the online price:
the prompt (estimated) plus the reply's tokens seen, or ``max_tokens`` when none could be seen.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields

from dd_core.config.models import PriceConfig

PER = 1_000_000  # prices are per million tokens


@dataclass
class Spend:
    """Requests and tokens one model was paid for (cache hits are not in here)."""

    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    #: Of the above, what went through the Batch API (charged at the batch discount).
    batch_requests: int = 0
    batch_prompt_tokens: int = 0
    batch_completion_tokens: int = 0
    #: Requests abandoned after they reached the server (not in the counts above): possibly billed.
    abandoned_requests: int = 0
    abandoned_prompt_tokens: int = 0
    abandoned_completion_tokens: int = 0

    def add_call(self, prompt_tokens: int, completion_tokens: int, *, batch: bool) -> None:
        self.requests += 1
        self.prompt_tokens += prompt_tokens
        self.completion_tokens += completion_tokens
        if batch:
            self.batch_requests += 1
            self.batch_prompt_tokens += prompt_tokens
            self.batch_completion_tokens += completion_tokens

    def add_abandoned(self, prompt_tokens: int, completion_tokens: int) -> None:
        self.abandoned_requests += 1
        self.abandoned_prompt_tokens += prompt_tokens
        self.abandoned_completion_tokens += completion_tokens

    def add(self, other: Spend) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def cost_usd(self, price: PriceConfig | None) -> float | None:
        """USD for these tokens at ``price``; None without a price."""
        if price is None:
            return None
        online_prompt = self.prompt_tokens - self.batch_prompt_tokens + self.abandoned_prompt_tokens
        online_completion = self.completion_tokens - self.batch_completion_tokens + self.abandoned_completion_tokens
        online = online_prompt * price.input_per_mtok + online_completion * price.output_per_mtok
        batch = self.batch_prompt_tokens * price.input_per_mtok + self.batch_completion_tokens * price.output_per_mtok
        return (online + batch * (1 - price.batch_discount)) / PER

    def to_json(self) -> dict[str, int]:
        """The amounts; the abandoned ones only when something was abandoned, so a row group
        with nothing abandoned is written byte for byte as before they were counted."""
        data = asdict(self)
        if not self.abandoned_requests:
            for name in ("abandoned_requests", "abandoned_prompt_tokens", "abandoned_completion_tokens"):
                del data[name]
        return data

    @classmethod
    def from_json(cls, data: dict) -> Spend:
        return cls(**{f.name: int(data.get(f.name, 0)) for f in fields(cls)})


def priced(spends: Mapping[str, Spend], prices: Mapping[str, PriceConfig | None]) -> dict[str, dict]:
    """Per alias, the spend and (for a model with a price) its ``cost_usd``: what a row group
    records about what it was paid for."""
    out = {}
    for alias, spend in sorted(spends.items()):
        entry: dict = spend.to_json()
        cost = spend.cost_usd(prices.get(alias))
        if cost is not None:
            entry["cost_usd"] = cost
        out[alias] = entry
    return out
