"""A downstream asset receives the combined dataset in the form its parameter's annotation asks
for (pandas, pyarrow, polars, a path), from the local disk and from each object store."""

from __future__ import annotations

import json
import pathlib
import runpy

import dagster as dg
import pandas as pd
import polars as pl
import pyarrow as pa
import pytest

from dd_core import generate
from dd_dagster import DagsterDataset, DataDesignerResource, build_dataset_definitions, register_partitions
from tests.dagster.helpers import QUIET, materialize_dataset, run_range, tiny_config
from tests.support import EXAMPLES

received: dict[str, object] = {}


@dg.asset
def as_pandas(tiny: pd.DataFrame) -> None:
    received["pandas"] = tiny


@dg.asset
def as_arrow(tiny: pa.Table) -> None:
    received["arrow"] = tiny


@dg.asset
def as_polars(tiny: pl.LazyFrame) -> None:
    received["polars"] = tiny.select(pl.len()).collect().item(), tiny.collect()


@dg.asset
def as_url(tiny: str) -> None:
    received["url"] = tiny


@dg.asset
def as_local_path(tiny: pathlib.Path) -> None:
    received["path"] = tiny


def _materialize(defs: dg.Definitions, instance, *assets: dg.AssetsDefinition) -> dg.ExecuteInProcessResult:
    combined = defs.resolve_assets_def(dg.AssetKey(["tiny"]))
    return dg.materialize(
        [combined, *assets],
        selection=[a.key for a in assets],
        instance=instance,
        run_config=QUIET,
        raise_on_error=False,
    )


@pytest.mark.parametrize("storage_root", ["local", "s3", "gs", "az"], indirect=True)
def test_downstream_assets_receive_the_dataset(storage_root, tiny_registered, tmp_path):
    defs = build_dataset_definitions(
        tiny_config(), num_records=200, buffer_size=50, resource=DataDesignerResource(artifact_path=storage_root)
    )
    run_range(defs, tiny_registered, 0, 3)
    combined = materialize_dataset(defs, tiny_registered)
    path = combined.get_asset_materialization_events()[0].materialization.metadata["path"].value
    expected = generate(tiny_config(), 200, buffer_size=50, artifact_path=tmp_path / "reference").load()
    received.clear()
    result = _materialize(defs, tiny_registered, as_pandas, as_arrow, as_polars, as_url)
    assert result.success
    assert received["pandas"].equals(expected)
    assert received["arrow"].to_pandas().equals(expected)
    rows, frame = received["polars"]
    assert rows == 200 and frame.to_pandas().equals(expected)
    assert received["url"] == path
    local = _materialize(defs, tiny_registered, as_local_path)
    if storage_root.startswith(("s3", "gs", "az")):
        assert not local.success  # one clear failure: annotate str for a URL
        failure = local.get_step_failure_events()[0].step_failure_data.error.message
        assert "not on the local disk" in failure and "annotate the parameter as str" in failure
    else:
        assert local.success and received["path"] == pathlib.Path(path) and received["path"].is_file()


def test_before_the_dataset_is_materialized_a_downstream_asset_says_so(tiny_registered, tmp_path):
    defs = build_dataset_definitions(
        tiny_config(), num_records=200, buffer_size=50, resource=DataDesignerResource(artifact_path=str(tmp_path))
    )
    result = _materialize(defs, tiny_registered, as_pandas)
    assert not result.success
    message = result.get_step_failure_events()[0].step_failure_data.error.message
    assert "tiny has not been materialized yet" in message


def test_an_unsupported_annotation_is_one_clear_failure(tiny_registered, tmp_path):
    @dg.asset
    def as_dict(tiny: dict) -> None:
        pass

    defs = build_dataset_definitions(
        tiny_config(), num_records=200, buffer_size=50, resource=DataDesignerResource(artifact_path=str(tmp_path))
    )
    run_range(defs, tiny_registered, 0, 3)
    materialize_dataset(defs, tiny_registered)
    result = _materialize(defs, tiny_registered, as_dict)
    message = result.get_step_failure_events()[0].step_failure_data.error.message
    assert "can be loaded as pd.DataFrame, pa.Table, pl.LazyFrame" in message
    assert json.dumps(message)  # plain text


def test_the_example_code_locations_downstream_asset(instance, tmp_path, monkeypatch):
    monkeypatch.setenv("DD_ARTIFACT_PATH", str(tmp_path / "artifacts"))
    defs = runpy.run_path(str(EXAMPLES / "definitions.py"))["defs"]
    register_partitions(instance, DagsterDataset.create(EXAMPLES / "customers.yaml", 10_000, 1_000))
    run_range(defs, instance, 0, 9, name="customers")
    assert materialize_dataset(defs, instance, name="customers").success
    by_city = defs.resolve_assets_def(dg.AssetKey(["customers_by_city"]))
    result = dg.materialize(
        [defs.resolve_assets_def(dg.AssetKey(["customers"])), by_city],
        selection=[by_city.key],
        instance=instance,
        run_config=QUIET,
    )
    metadata = result.get_asset_materialization_events()[0].materialization.metadata
    assert metadata["dagster/row_count"].value == 8  # 4 regions x 2 cities
    assert metadata["customers"].value == 10_000 and "| north | oslo |" in metadata["summary"].value
