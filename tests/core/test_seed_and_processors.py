"""Seed-dataset sampling modes and after-generation processors."""

from __future__ import annotations

import collections

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dd_core import generate, generate_row_group, load_config, preview
from tests.support import EXAMPLES


@pytest.fixture
def seed_file(tmp_path):
    path = tmp_path / "seed.parquet"
    pq.write_table(pa.table({"item": [f"item-{i}" for i in range(10)], "price": [float(i) for i in range(10)]}), path)
    return path


def _items(seed_file, order: str, replace: bool, buffer_size: int, row_groups: int) -> list[list[str]]:
    config = {
        "columns": [{"name": "s", "type": "seed_dataset", "path": str(seed_file), "order": order, "replace": replace}]
    }
    return [
        generate_row_group(config, k, buffer_size, buffer_size=buffer_size).column("item").to_pylist()
        for k in range(row_groups)
    ]


def test_ordered_walks_the_file_across_row_groups_and_wraps(seed_file):
    groups = _items(seed_file, "ordered", False, 4, 3)
    assert sum(groups, []) == [f"item-{i % 10}" for i in range(12)]


def test_shuffled_uses_every_row_once_per_pass_across_row_groups(seed_file):
    rows = sum(_items(seed_file, "shuffled", False, 3, 10), [])  # 30 rows = 3 passes of 10
    for p in range(3):
        assert sorted(rows[p * 10 : (p + 1) * 10]) == sorted(f"item-{i}" for i in range(10))
    assert rows[:10] != [f"item-{i}" for i in range(10)]
    assert rows[:10] != rows[10:20]  # each pass is its own permutation


def test_with_replacement_draws_independently(seed_file):
    rows = sum(_items(seed_file, "shuffled", True, 1000, 2), [])
    counts = collections.Counter(rows)
    assert set(counts) == {f"item-{i}" for i in range(10)}
    assert all(abs(c / 2000 - 0.1) < 0.03 for c in counts.values())


def test_selected_columns_and_relative_paths(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "s.csv").write_text("a,b,c\n1,x,true\n2,y,false\n")
    (tmp_path / "config.yaml").write_text(
        "columns:\n  - {name: s, type: seed_dataset, path: data/s.csv, columns: [b]}\n  - {name: e, type: expression, expr: '{{ b }}!'}\n"
    )
    table = generate_row_group(load_config(tmp_path / "config.yaml"), 0, 4)
    assert table.column_names == ["b", "e"]
    assert table.column("e").to_pylist() == ["x!", "y!", "x!", "y!"]


def test_processors_shape_the_final_dataset_but_row_groups_keep_every_column(tmp_path):
    result = generate(EXAMPLES / "orders_from_seed.yaml", 1000, buffer_size=300, artifact_path=tmp_path)
    frame = result.load()
    assert list(frame.columns) == [
        "sku",
        "product",
        "order_id",
        "quantity",
        "created_at",
        "shipped_at",
        "line_total",
        "description",
    ]
    assert len(frame) == 1000
    assert result.dataset_files == [result.path / "dataset.parquet"]
    raw = pq.read_table(result.path / "parquet-files" / "batch_00000.parquet")
    assert {"discount", "unit_price", "label", "ordered_at"} <= set(raw.column_names)
    assert preview(EXAMPLES / "orders_from_seed.yaml", 3).columns.tolist() == list(frame.columns)
