"""Per-model usage counters: what was paid for, retried, failed or reused.

Counted per finished row group by the run that finished it. A run killed inside a row group
cannot record its calls; the run that resumes it finds them in the response cache and
counts them as ``cache_hits`` (paid once, by the killed run).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass
class ModelUsage:
    model: str
    provider: str = "openai"
    calls: int = 0  # successful requests (paid)
    batch_calls: int = 0  # of those, answered through the Batch API
    cache_hits: int = 0  # replies reused from the response cache (not paid again)
    retries: int = 0  # requests repeated after a transient failure
    invalid_replies: int = 0  # replies re-asked because they did not parse or validate
    failed_cells: int = 0  # cells given up on (their rows were dropped)
    throttled: int = 0  # answers asking to slow down: 429, an overloaded server's 503, Anthropic's 529
    #: Requests given up on after they reached the server (timeouts, stalled streams, cut
    #: connections): it may have written them to their end, and a provider billed them. Their
    #: possibly billed tokens: the prompt (estimated, 4 bytes a token of the body) plus the reply's
    #: tokens seen (streamed), or max_tokens when nothing could be seen.
    abandoned: int = 0
    abandoned_prompt_tokens: int = 0
    abandoned_completion_tokens: int = 0
    #: Replies that ended at max_tokens and then failed their column's parse (re-asked, or the cell failed).
    cut_replies: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    #: Summed duration of this model's HTTP requests, failed ones included (requests overlap,
    #: so this can exceed the wall time of the row group).
    request_seconds: float = 0.0
    lowest_concurrency: int | None = None
    errors: Counter[str] = field(default_factory=Counter)  # status code (or "network") -> count
    sample_error: str | None = None

    def add(self, other: ModelUsage) -> None:
        for name in (
            "calls",
            "batch_calls",
            "cache_hits",
            "retries",
            "invalid_replies",
            "failed_cells",
            "throttled",
            "abandoned",
            "abandoned_prompt_tokens",
            "abandoned_completion_tokens",
            "cut_replies",
            "prompt_tokens",
            "completion_tokens",
            "request_seconds",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.errors.update(other.errors)
        self.sample_error = self.sample_error or other.sample_error
        lows = [v for v in (self.lowest_concurrency, other.lowest_concurrency) if v is not None]
        self.lowest_concurrency = min(lows) if lows else None

    def to_json(self) -> dict:
        data = {k: v for k, v in self.__dict__.items() if k != "errors"}
        data["errors"] = dict(sorted(self.errors.items()))
        return data

    @classmethod
    def from_json(cls, data: dict) -> ModelUsage:
        known = cls.__dataclass_fields__
        return cls(**{**{k: v for k, v in data.items() if k in known}, "errors": Counter(data.get("errors", {}))})


def merge_usage(total: dict[str, ModelUsage], part: dict[str, ModelUsage]) -> dict[str, ModelUsage]:
    for alias, usage in part.items():
        if alias in total:
            total[alias].add(usage)
        else:
            total[alias] = ModelUsage.from_json(usage.to_json())
    return total
