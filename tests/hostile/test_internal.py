"""What is left: an unexpected exception says it is a bug (exit 70, --debug shows it), and
planning stays O(row groups touched) for targets of millions of row groups."""

from __future__ import annotations

import json
import tracemalloc

import pytest

import dd_core.interface.api as api
from dd_core import DDConfigError
from dd_core.index_ranges import IndexRanges
from dd_core.orchestration import plan_resume, row_group_sizes
from dd_core.resume import Checkpoint, Found, FoundState, RangeCheckpoints
from tests.hostile.conftest import CUSTOMERS
from tests.hostile.harness import check, invoke


def _boom(*args, **kwargs):
    raise RuntimeError("something dd did not expect")


def test_an_internal_error_is_one_message_and_its_own_code(tmp_path, monkeypatch):
    monkeypatch.setattr(api, "generate", _boom)
    outcome = invoke("generate", CUSTOMERS, "-n", 10, "--artifact-path", tmp_path)
    assert outcome.code == 70 and "Traceback" not in outcome.output
    assert "internal error (a bug in dd): RuntimeError: something dd did not expect" in outcome.stderr
    assert "Rerun with --debug" in outcome.stderr


def test_debug_shows_the_exception(tmp_path, monkeypatch):
    monkeypatch.setattr(api, "generate", _boom)
    outcome = invoke("--debug", "generate", CUSTOMERS, "-n", 10, "--artifact-path", tmp_path)
    assert isinstance(outcome.exception, RuntimeError) and outcome.code == 1


def test_planning_ten_million_row_groups_costs_what_the_ranges_cost():
    n, buffer = 10_000_000, 1
    done = RangeCheckpoints(
        IndexRanges([(0, 4_999_999), (5_000_010, n - 2)]), Checkpoint("sha256:x", buffer, buffer), {}
    )
    found = FoundState(Found.DATASET, config_hash="sha256:x", buffer_size=buffer, num_records=n, checkpoints=done)
    tracemalloc.start()
    plan = plan_resume("if_possible", found, "sha256:x", n, buffer, location="here")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert list(plan.generate) == [*range(5_000_000, 5_000_010), n - 1]
    assert len(plan.reuse) == n - 11 and plan.sizes[n - 1] == 1 and len(plan.sizes) == n
    assert peak < 1_000_000, f"planning used {peak:,} bytes"


def test_targets_beyond_the_limits_are_usage_errors():
    with pytest.raises(DDConfigError, match="10,000,000,000,000 row groups"):
        row_group_sizes(10**13, 1)
    with pytest.raises(DDConfigError, match="whole numbers"):
        row_group_sizes(float("nan"), 10)


def test_status_of_a_huge_claimed_range_is_damage_found_without_expanding(done):
    """A range of 10,000,000 row groups within its own target, with 3 files: found missing at once."""
    meta = json.loads((done / "metadata.json").read_text())
    meta.update(num_records=2_000_000_000, completed_row_groups=[[0, 9_999_999]])
    (done / "metadata.json").write_text(json.dumps(meta))
    tracemalloc.start()
    outcome = invoke("status", done)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    check(outcome, 4, "as finished", "9,999,997 missing")
    assert peak < 20_000_000, f"status used {peak:,} bytes"
