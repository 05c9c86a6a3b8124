"""Exactly N rows that pass: a row group made of the first accepted candidates.

With ``accept:`` a row group of N rows is chosen from a stream of candidates. Candidate ``i``
of row group ``g`` is row ``i`` of the row group's candidate stream: its sampled columns come
from the streams seeded by (seed, g, column) (row ``i`` of a longer draw is the same value
whatever its length: the prefix property that extending a partial row group also relies
on), and its LLM cells send the seeds of (seed, g, i, column) and are cached by request like
any other. So every candidate is a pure function of (config, g, i).

Candidates are generated in waves: the first of N, each next one sized from the acceptance
rate this row group has seen so far (``next_wave_size``), up to the budget of
``max_candidates_per_record * N`` candidates. A wave's verdicts (its validators, then the
rule) are taken once all its candidates are done. The row group keeps the first N accepted
candidates in candidate order. Wave sizes depend only on earlier waves' verdicts, so the
waves themselves, and with them the candidates generated (and paid for), are the same in any
process, with any number of workers, and after a crash (whose finished calls are cache hits).
Even were they not, the rows kept would be: the first N accepted of one fixed stream.

A candidate that loses an LLM cell (after retries) counts as rejected, as a failed cell drops
a row without a rule; more of them than ``max_failed_row_share`` of the candidates fail the row
group. When the budget runs out with fewer than N accepted, the row group fails with the rate
and the budget in its message, unless the shortfall is within ``max_failed_row_share``.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import jinja2
import numpy as np
import pyarrow as pa

from dd_core.config import DatasetConfig
from dd_core.config.render_limits import RenderLimitExceeded
from dd_core.config.rule import evaluate_rule, rule_names
from dd_core.engine.context import RowGroupContext
from dd_core.engine.llm.usage import ModelUsage
from dd_core.engine.post_stage import PostStage
from dd_core.engine.row_group import AcceptanceCounts, RowGroupResult, assemble, failure_report, vector_stage
from dd_core.errors import ConfigIssue, DDConfigError, GenerationError

if TYPE_CHECKING:
    from dd_core.engine.rowwise import RowwiseOutcome

#: Waves after the first ask for this much more than the rate seen so far says is missing.
WAVE_MARGIN = 1.1
#: Column of the rejected-candidates file that gives each candidate's position in the stream.
CANDIDATE_COLUMN = "_dd_candidate"


def candidate_budget(config: DatasetConfig, num_rows: int) -> int:
    """Candidates a row group of ``num_rows`` may generate."""
    return max(num_rows, math.floor(config.max_candidates_per_record * num_rows + 1e-9))


def next_wave_size(needed: int, accepted: int, generated: int, budget: int) -> int:
    """Candidates to generate next (0: done, or the budget is spent). The first wave is
    ``needed``; later ones what is missing over the rate seen so far (Laplace-smoothed, so
    a wave that accepted nothing still gives a finite rate), times ``WAVE_MARGIN``."""
    missing, left = needed - accepted, budget - generated
    if missing <= 0 or left <= 0:
        return 0
    if generated == 0:
        return min(needed, left)
    rate = (accepted + 1) / (generated + 2)
    return min(left, max(1, math.ceil(missing / rate * WAVE_MARGIN)))


class CandidateSelection:
    """One row group's candidates: their vectorised columns, the waves judged so far, and the
    row group made of the first accepted ones."""

    def __init__(self, config: DatasetConfig, index: int, num_rows: int, buffer_size: int):
        self.config = config
        self.index = index
        self.needed = num_rows
        self.buffer_size = buffer_size
        self.budget = candidate_budget(config, num_rows)
        #: Ordered seed files: each row group's candidates read their own range of rows.
        self.offset = index * candidate_budget(config, buffer_size)
        self.post = PostStage(config)
        self.rule_names = sorted(rule_names(config.accept))
        self.ctx: RowGroupContext | None = None
        self.generated = self.accepted = self.failed = 0
        self.judged_waves = 0
        self._tables: list[pa.Table] = []
        self._verdicts: list[np.ndarray] = []
        self._ids: list[np.ndarray] = []

    def next_wave(self) -> int:
        return next_wave_size(self.needed, self.accepted, self.generated, self.budget)

    @property
    def done(self) -> bool:
        return self.judged_waves > 0 and self.next_wave() == 0

    def context(self, end: int) -> RowGroupContext:
        """The vectorised columns of candidates ``[0, end)`` at least. Made again, larger, when a
        wave needs more (the first rows come out the same), at least doubling each time."""
        if self.ctx is None or self.ctx.num_rows < end:
            size = end if self.ctx is None else min(self.budget, max(end, 2 * self.ctx.num_rows))
            self.ctx = vector_stage(self.config, self.index, size, self.buffer_size, row_offset=self.offset)
        return self.ctx

    def judge(
        self, start: int, end: int, live: list[int] | None = None, rowwise: dict[str, pa.Array] | None = None
    ) -> None:
        """Take the verdicts of candidates ``[start, end)``: ``live`` are those that kept every
        LLM cell (all without LLM columns), ``rowwise`` their row-wise columns."""
        live = list(range(start, end)) if live is None else live
        self.generated += end - start
        self.failed += end - start - len(live)
        ctx = self.context(end)
        positions = pa.array(live, pa.int64())
        columns = {name: array.take(positions) for name, array in ctx.columns.items()}
        columns.update(rowwise or {})
        self.post.run(columns, len(live))
        verdicts = np.array(self._rule(columns, live), dtype=bool)
        self._tables.append(pa.table({name: columns[name] for name in self.config.generated_names}))
        self._verdicts.append(verdicts)
        self._ids.append(np.array(live, dtype=np.int64))
        self.accepted += int(verdicts.sum())
        self.judged_waves += 1

    def _rule(self, columns: dict[str, pa.Array], live: list[int]) -> list[bool]:
        values = [columns[name].to_pylist() for name in self.rule_names]
        contexts = (dict(zip(self.rule_names, row)) for row in zip(*values)) if values else ({} for _ in live)
        verdicts: list[bool] = []
        try:
            for value in evaluate_rule(self.config.accept, contexts, self.config.render_limits):
                if type(value) is not bool:
                    shown = f"{str(value)[:60]!r} ({type(value).__name__})"
                    raise _RuleProblem(f"gave {shown}, not true or false; make it a comparison or a test")
                verdicts.append(value)
        except _RuleProblem as exc:
            raise self._problem(live[len(verdicts)], str(exc)) from exc
        except RenderLimitExceeded as exc:
            raise self._problem(live[len(verdicts)], f"exceeds its render limits: {exc}") from exc
        except (RecursionError, MemoryError) as exc:
            raise self._problem(live[len(verdicts)], "ran out of stack or memory; simplify it") from exc
        except jinja2.UndefinedError as exc:
            raise self._problem(live[len(verdicts)], f"uses something undefined: {exc}") from exc
        except Exception as exc:  # the rule's own error on this row (e.g. None >= 2)
            raise self._problem(live[len(verdicts)], f"failed: {type(exc).__name__}: {exc}") from exc
        return verdicts

    def _problem(self, candidate: int, message: str) -> DDConfigError:
        return DDConfigError(
            [ConfigIssue(f"on candidate {candidate} of row group {self.index} the rule {message}", None, "accept")]
        )

    def counts(self) -> AcceptanceCounts:
        return AcceptanceCounts(self.generated, self.accepted, self.failed, self.budget)

    def result(
        self, usage: dict[str, ModelUsage] | None = None, outcome: RowwiseOutcome | None = None
    ) -> RowGroupResult:
        """The row group: the first ``needed`` accepted candidates in candidate order. Raises
        ``GenerationError`` past ``max_failed_row_share`` (failed cells, or rows short when the
        budget is spent)."""
        share = self.config.max_failed_row_share
        if outcome is not None and self.generated and self.failed / self.generated > share:
            raise GenerationError(
                failure_report(self.index, self.generated, self.failed, share, outcome, what="candidates")
            )
        table = pa.concat_tables(self._tables)
        verdicts = np.concatenate(self._verdicts)
        positions = np.flatnonzero(verdicts)[: self.needed]
        kept = table.take(pa.array(positions, pa.int64())).combine_chunks()
        short = self.needed - kept.num_rows
        if short and short / self.needed > share:
            raise GenerationError(self._budget_report(short))
        result = RowGroupResult(kept, self.needed, usage or {}, acceptance=self.counts())
        if self.config.keep_rejected:
            ids = np.concatenate(self._ids)
            rejected = table.filter(pa.array(~verdicts)).combine_chunks()
            result.rejected = rejected.add_column(0, CANDIDATE_COLUMN, pa.array(ids[~verdicts], pa.int64()))
            result.kept_candidates = ids[positions].tolist()
        return result

    def _budget_report(self, short: int) -> str:
        counts = self.counts()
        judged = counts.candidates - counts.failed
        head = (
            f"row group {self.index} failed: the accept rule passed {counts.accepted} of {judged} judged candidates "
            f"(acceptance rate {counts.rate:.1%}), and max_candidates_per_record "
            f"({self.config.max_candidates_per_record:g}) allows {self.budget} candidates for its {self.needed} rows, "
            f"so it is {short} row(s) short, more than max_failed_row_share ({self.config.max_failed_row_share:.0%}) "
            "allows. It was not recorded; every LLM call made for it is cached (a rerun does not pay again) and "
            "counted in the cost."
        )
        if counts.accepted == 0:
            return f"{head} No candidate passed: check the rule (accept: {self.config.accept[:200]})"
        needed = math.ceil(self.needed / counts.rate)
        return (
            f"{head} At this rate {self.needed} rows need about {needed} candidates "
            f"(max_candidates_per_record {needed / self.needed:.1f}): raise it, or loosen the rule"
        )


class _RuleProblem(Exception):
    """The rule gave something other than true or false."""


def vectorised_row_group(config: DatasetConfig, index: int, num_rows: int, buffer_size: int) -> RowGroupResult:
    """A row group of a config without LLM columns: all its columns at once, or, with a rule,
    its candidates wave by wave."""
    if config.accept is None:
        return assemble(config, vector_stage(config, index, num_rows, buffer_size))
    selection = CandidateSelection(config, index, num_rows, buffer_size)
    while not selection.done:
        start = selection.generated
        selection.judge(start, start + selection.next_wave())
    return selection.result()
