"""Cost from configured prices only: tokens times prices, batch requests at the discount."""

from __future__ import annotations

import pytest

from dd_core.config.models import PriceConfig
from dd_core.engine.llm.cost import Spend
from dd_core.storage.spend import account, row_group_spend

PRICE = PriceConfig(input_per_mtok=2.5, output_per_mtok=10.0, batch_discount=0.5)


def test_online_and_batch_tokens_at_their_prices():
    spend = Spend()
    spend.add_call(1_000, 200, batch=False)
    spend.add_call(3_000, 400, batch=True)
    online = (1_000 * 2.5 + 200 * 10.0) / 1e6
    batch = (3_000 * 2.5 + 400 * 10.0) / 1e6 * 0.5
    assert spend.cost_usd(PRICE) == pytest.approx(online + batch, rel=1e-12)
    assert (spend.requests, spend.batch_requests, spend.prompt_tokens, spend.batch_completion_tokens) == (
        2,
        1,
        4_000,
        400,
    )


def test_no_price_no_cost():
    spend = Spend()
    spend.add_call(10, 10, batch=False)
    assert spend.cost_usd(None) is None


@pytest.mark.parametrize(("discount", "share"), [(0.0, 1.0), (0.5, 0.5), (1.0, 0.0)])
def test_the_discount_is_the_share_taken_off(discount, share):
    spend = Spend()
    spend.add_call(1_000_000, 0, batch=True)
    assert spend.cost_usd(PriceConfig(input_per_mtok=4, output_per_mtok=0, batch_discount=discount)) == pytest.approx(
        4 * share
    )


def test_sums_and_round_trips():
    a, b = Spend(), Spend()
    a.add_call(5, 6, batch=True)
    b.add_call(7, 8, batch=False)
    a.add(b)
    assert Spend.from_json(a.to_json()) == a and a.requests == 2 and a.completion_tokens == 14
    assert Spend.from_json({}) == Spend()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", {}),
        ("not json", {}),
        ("[1, 2]", {}),
        ('{"writer": 5}', {}),
        ('{"writer": {"requests": "ten", "cost_usd": NaN, "prompt_tokens": Infinity, "batch": true}}', {"writer": {}}),
        ('{"writer": {"requests": 4, "cost_usd": 0.25}, "judge": null}', {"writer": {"requests": 4, "cost_usd": 0.25}}),
    ],
)
def test_a_files_spend_record_keeps_only_amounts(text, expected):
    """A row-group file's llm_spend is read back on resume and in Dagster: a record of the wrong
    shape counts as nothing rather than failing the run or adding NaN to the dataset's cost."""
    spend = row_group_spend(text)
    assert spend == expected
    extra: dict = {}
    account(extra, 0, spend, partial=False)  # summing it never fails
