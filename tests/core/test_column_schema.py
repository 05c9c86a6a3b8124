"""The column schema known before generation equals what generation writes (issue 11)."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from dd_core import generate_row_group, load_config
from dd_core.engine.llm.runtime import LLMRuntime
from dd_core.orchestration import apply_processors, column_schema, storage_path
from dd_core.testing.llm_server import OpenAIServer
from tests.core.test_llm_columns import all_types_config
from tests.support import EXAMPLES


def _written(config, tmp_path, llm=None):
    """The schemas of a row-group file and of the processed dataset, as written and read back."""
    table = generate_row_group(config, 0, 20, llm=llm)
    pq.write_table(table, tmp_path / "generated.parquet")
    pq.write_table(apply_processors(config, table), tmp_path / "processed.parquet")
    return pq.read_schema(tmp_path / "generated.parquet"), pq.read_schema(tmp_path / "processed.parquet")


@pytest.mark.parametrize("name", ["customers.yaml", "orders_from_seed.yaml"])
def test_schema_before_generation_equals_the_files(name, tmp_path):
    config = load_config(EXAMPLES / name)
    generated, processed = _written(config, tmp_path)
    assert [(c.name, c.type) for c in column_schema(config, processed=False)] == list(
        zip(generated.names, generated.types)
    )
    assert [(c.name, c.type) for c in column_schema(config)] == list(zip(processed.names, processed.types))


def test_llm_columns_and_their_expressions_have_their_types_before_any_call(tmp_path):
    with OpenAIServer() as server:
        config = load_config(all_types_config(server.base_url))
        before = server.stats()["succeeded"]
        schema = column_schema(config)
        assert server.stats()["succeeded"] == before  # nothing was asked of the model
        generated, _ = _written(config, tmp_path, LLMRuntime(cache_dir=storage_path(str(tmp_path / "cache"))))
    assert [(c.name, c.type) for c in schema] == list(zip(generated.names, generated.types))


def test_each_column_says_how_it_is_made():
    orders = {c.name: c for c in column_schema(EXAMPLES / "orders_from_seed.yaml")}
    customers = {c.name: c for c in column_schema(EXAMPLES / "customers.yaml")}
    assert customers["score"].generator == "uniform float in [0, 100), rounded to 2 decimals"
    assert customers["record_id"].generator.startswith("uuid4")
    assert customers["summary"].generator.startswith("expression (str): {{")
    assert "Faker en_US" in customers["person"].generator
    assert all(c.generator for c in [*customers.values(), *orders.values()])
    renamed = [c for c in orders.values() if "renamed from" in c.generator]
    assert renamed and all(c.name not in c.generator.split("renamed from")[1] for c in renamed)
    assert any(
        c.generator.startswith("seed_dataset: column") and "products.csv" in c.generator for c in orders.values()
    )
