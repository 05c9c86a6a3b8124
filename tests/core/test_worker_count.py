"""How many worker processes a run uses when dd chooses (``workers=None``, the CLI's default)."""

from __future__ import annotations

import pytest

from dd_core import load_config
from dd_core.engine import worker_count as wc
from tests.support import EXAMPLES

SAMPLERS = load_config(EXAMPLES / "customers.yaml")
LLM = load_config(EXAMPLES / "support_tickets_llm.yaml")


@pytest.fixture(autouse=True)
def four_cores(monkeypatch):
    monkeypatch.setattr(wc, "available_cores", lambda: 4)


def test_a_small_sampler_job_runs_in_one_process_and_a_large_one_on_every_core():
    assert wc.worker_count(SAMPLERS, 20_000, 20, None) == 1  # a second process would cost more than it saves
    assert wc.worker_count(SAMPLERS, 60_000, 60, None) == 2
    assert wc.worker_count(SAMPLERS, 1_000_000, 1_000, None) == 4


def test_llm_jobs_get_every_core_and_a_given_count_is_kept():
    assert wc.worker_count(LLM, 2_000, 2, None) == 2  # one per row group at most
    assert wc.worker_count(LLM, 20_000, 20, None) == 4
    assert wc.worker_count(SAMPLERS, 20_000, 20, 3) == 3
    assert wc.worker_count(SAMPLERS, 3_000, 3, 8) == 3
