"""Batch mode, prices and rate limits on a model: validated, and outside the fingerprint."""

from __future__ import annotations

import pytest

from dd_core import DDConfigError, fingerprint, load_config
from tests.core.test_llm_columns import chain_config
from tests.support import run_dd

URL = "http://127.0.0.1:1/v1"


def hash_of(**model) -> str:
    return fingerprint(load_config(chain_config(URL, **model)))["config_hash"]


def test_defaults():
    model = load_config(chain_config(URL)).models[0]
    assert (model.batch, model.batch_poll_interval_s, model.batch_completion_window) == (False, 30.0, "24h")
    assert model.price is None and model.max_requests_per_minute is None and model.max_tokens_per_minute is None
    priced = load_config(chain_config(URL, price={"input_per_mtok": 0.15, "output_per_mtok": 0.6})).models[0]
    assert priced.price.batch_discount == 0.5


def test_timeouts_tell_silence_from_slowness_and_auto_streams_only_long_replies():
    model = load_config(chain_config(URL)).models[0]
    assert (model.connect_timeout_s, model.timeout_s, model.idle_timeout_s, model.stream) == (10, 600, 120, "auto")
    assert not model.streams, "short or unbounded replies come whole (less CPU per call)"
    assert not load_config(chain_config(URL, max_tokens=999)).models[0].streams
    assert load_config(chain_config(URL, max_tokens=1000)).models[0].streams
    assert load_config(chain_config(URL, stream=True)).models[0].streams
    assert not load_config(chain_config(URL, max_tokens=4000, stream=False)).models[0].streams
    assert hash_of(stream=True, timeout_s=5, connect_timeout_s=1, idle_timeout_s=2) == hash_of()


def test_batch_mode_prices_and_limits_leave_the_fingerprint_alone():
    base = hash_of(max_tokens=64)
    changed = hash_of(
        max_tokens=64,
        batch=True,
        batch_poll_interval_s=5,
        batch_completion_window="48h",
        price={"input_per_mtok": 2.5, "output_per_mtok": 10, "batch_discount": 0.4},
        max_requests_per_minute=500,
        max_tokens_per_minute=200_000,
    )
    assert changed == base


@pytest.mark.parametrize(
    ("model", "field", "words"),
    [
        ({"batch_poll_interval_s": 0}, "batch_poll_interval_s", "greater than 0"),
        ({"batch_poll_interval_s": float("inf")}, "batch_poll_interval_s", "finite"),
        ({"batch_poll_interval_s": 1e9}, "batch_poll_interval_s", "less than or equal"),
        ({"batch_completion_window": "24"}, "batch_completion_window", "such as '24h'"),
        ({"batch_completion_window": "0h"}, "batch_completion_window", "such as '24h'"),
        ({"batch_completion_window": "1 day"}, "batch_completion_window", "such as '24h'"),
        ({"price": {"input_per_mtok": -1, "output_per_mtok": 1}}, "price.input_per_mtok", "greater than or equal to 0"),
        ({"price": {"input_per_mtok": float("nan"), "output_per_mtok": 1}}, "price.input_per_mtok", "finite"),
        ({"price": {"input_per_mtok": 1, "output_per_mtok": 1e300}}, "price.output_per_mtok", "less than or equal"),
        ({"price": {"input_per_mtok": 1}}, "price.output_per_mtok", "required"),
        (
            {"price": {"input_per_mtok": 1, "output_per_mtok": 1, "batch_discount": 1.5}},
            "price.batch_discount",
            "less than or equal to 1",
        ),
        (
            {"price": {"input_per_mtok": 1, "output_per_mtok": 1, "currency": "EUR"}},
            "price.currency",
            "not a known field",
        ),
        ({"stream": "sometimes"}, "stream", "auto"),
        ({"connect_timeout_s": 0}, "connect_timeout_s", "greater than 0"),
        ({"idle_timeout_s": float("nan")}, "idle_timeout_s", "finite"),
        ({"max_requests_per_minute": 0}, "max_requests_per_minute", "greater than or equal to 1"),
        ({"max_requests_per_minute": 2.5}, "max_requests_per_minute", "integer"),
        ({"max_tokens_per_minute": 1000}, "max_tokens", "max_tokens_per_minute needs max_tokens"),
        ({"max_tokens_per_minute": -5, "max_tokens": 10}, "max_tokens_per_minute", "greater than or equal to 1"),
    ],
)
def test_bad_values_name_the_field(model, field, words):
    with pytest.raises(DDConfigError) as caught:
        load_config(chain_config(URL, **model))
    assert f"models.0.{field}" in str(caught.value) and words in str(caught.value)


def test_the_cli_reports_a_bad_price_without_a_traceback(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(
        "models:\n  - {alias: writer, model: m, base_url: 'http://127.0.0.1:1/v1', price: {input_per_mtok: .nan, output_per_mtok: 1}}\n"
        "columns:\n  - {name: q, type: llm_text, model: writer, prompt: hi}\n"
    )
    run = run_dd("validate", path)
    assert run.returncode == 2 and "models.0.price.input_per_mtok" in run.stderr and "Traceback" not in run.stderr
