"""What the asset pages show (issue 11, point 4): definition metadata before any run, numeric
per-model LLM usage per row group with totals on the combined asset, a readable preview, and
described run-config and resource fields."""

from __future__ import annotations

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq

from dd_core.testing.llm_server import OpenAIServer
from dd_dagster import (
    DagsterDataset,
    DataDesignerResource,
    DatasetAssetProps,
    DDDatasetTranslator,
    build_dataset_definitions,
    register_partitions,
)
from dd_dagster.metadata import PREVIEW_CHARS, USAGE_COUNTERS, preview
from tests.core.test_llm_columns import chain_config
from tests.dagster.helpers import materialize_dataset, run_range
from tests.support import EXAMPLES


def _spec(defs: dg.Definitions, key: list[str]) -> dg.AssetSpec:
    asset_key = dg.AssetKey(key)
    return defs.resolve_assets_def(asset_key).specs_by_key[asset_key]


def test_column_schema_config_and_its_file_before_any_run(tmp_path):
    defs = build_dataset_definitions(
        EXAMPLES / "orders_from_seed.yaml", num_records=5000, buffer_size=500, resource=DataDesignerResource()
    )
    combined, row_groups = _spec(defs, ["orders"]), _spec(defs, ["orders_row_groups"])
    columns = {c.name: c for c in combined.metadata["dagster/column_schema"].columns}
    assert list(columns) == [
        "sku",
        "product",
        "order_id",
        "quantity",
        "created_at",
        "shipped_at",
        "line_total",
        "description",
    ]
    assert columns["quantity"].type == "int64" and columns["quantity"].description == "binomial: n=5, p=0.4"
    assert (
        columns["created_at"].type == "timestamp[ms]"
        and "renamed from 'ordered_at'" in columns["created_at"].description
    )
    assert columns["line_total"].description.startswith("expression (float): {{ ((quantity + 1) * unit_price")
    generated = [c.name for c in row_groups.metadata["dagster/column_schema"].columns]
    assert "discount" in generated and "label" in generated and "description" not in generated  # before processors
    text = (EXAMPLES / "orders_from_seed.yaml").read_text()
    for spec in (combined, row_groups):
        assert spec.metadata["config"].value == f"```yaml\n{text.rstrip()}\n```"
        [reference] = spec.metadata["dagster/code_references"].code_references
        assert reference.file_path == str((EXAMPLES / "orders_from_seed.yaml").resolve())
        assert (
            spec.metadata["num_records"].value == "5,000"
            and spec.metadata["row_groups"].value == "10 (partition keys 00000..00009)"
        )
    assert row_groups.group_name == combined.group_name == "orders" and row_groups.description.startswith(
        "Row groups of **orders**"
    )

    # The schema stated before the run is what the combined file holds.
    with dg.instance_for_test() as instance:
        register_partitions(instance, DagsterDataset.create(EXAMPLES / "orders_from_seed.yaml", 1000, 500))
        small = build_dataset_definitions(
            EXAMPLES / "orders_from_seed.yaml",
            num_records=1000,
            buffer_size=500,
            resource=DataDesignerResource(artifact_path=str(tmp_path)),
        )
        run_range(small, instance, 0, 1, name="orders")
        meta = (
            materialize_dataset(small, instance, name="orders")
            .get_asset_materialization_events()[0]
            .materialization.metadata
        )
    schema = pq.read_schema(meta["path"].value)
    assert [(c.name, c.type) for c in _spec(small, ["orders"]).metadata["dagster/column_schema"].columns] == [
        (n, str(t)) for n, t in zip(schema.names, schema.types)
    ]
    assert meta["dagster/column_schema"].value == _spec(small, ["orders"]).metadata["dagster/column_schema"]


def test_owners_and_tags_come_through_the_translator():
    class Owned(DDDatasetTranslator):
        def get_asset_spec(self, props: DatasetAssetProps) -> dg.AssetSpec:
            return super().get_asset_spec(props).merge_attributes(owners=["team:synthetic-data"], tags={"tier": "gold"})

    defs = build_dataset_definitions(
        EXAMPLES / "customers.yaml", num_records=2000, translator=Owned(), resource=DataDesignerResource()
    )
    for key in (["customers"], ["customers_row_groups"]):
        spec = _spec(defs, key)
        assert spec.owners == ["team:synthetic-data"] and spec.tags == {
            "dd/dataset": "customers",
            "tier": "gold",
            "dagster/kind/parquet": "",
        }


def test_llm_usage_is_numeric_per_model_and_summed_on_the_combined_asset(tmp_path, instance):
    with OpenAIServer(latency_ms=2) as server:
        config = chain_config(server.base_url)  # two llm_text columns of model "writer"
        defs = build_dataset_definitions(
            config, num_records=60, buffer_size=20, resource=DataDesignerResource(artifact_path=str(tmp_path))
        )
        register_partitions(instance, DagsterDataset.create(config, 60, 20))
        events = run_range(defs, instance, 0, 2, name="chain").get_asset_materialization_events()
        per_row_group = [
            {k: v.value for k, v in e.materialization.metadata.items() if k.startswith("llm/")} for e in events
        ]
        first = (
            materialize_dataset(defs, instance, name="chain")
            .get_asset_materialization_events()[0]
            .materialization.metadata
        )
        rerun = run_range(defs, instance, 0, 2, name="chain").get_asset_materialization_events()  # everything reused
        again = (
            materialize_dataset(defs, instance, name="chain")
            .get_asset_materialization_events()[0]
            .materialization.metadata
        )
        assert server.stats()["succeeded"] == 120
    assert all(set(m) == {f"llm/writer/{c}" for c in USAGE_COUNTERS} for m in per_row_group)
    assert [m["llm/writer/calls"] for m in per_row_group] == [40, 40, 40]
    assert all(
        isinstance(m["llm/writer/prompt_tokens"], int) and m["llm/writer/prompt_tokens"] > 0 for m in per_row_group
    )
    assert all(
        isinstance(m["llm/writer/request_seconds"], float) and m["llm/writer/request_seconds"] > 0
        for m in per_row_group
    )
    totals = {k: v.value for k, v in first.items() if k.startswith("llm/")}
    assert totals["llm/writer/calls"] == 120
    assert totals["llm/writer/completion_tokens"] == sum(m["llm/writer/completion_tokens"] for m in per_row_group)
    # A reused row group keeps what it cost to make: the totals do not drop.
    assert all(e.materialization.metadata["reused"].value for e in rerun)
    assert [e.materialization.metadata["llm/writer/calls"].value for e in rerun] == [40, 40, 40]
    assert {k: v.value for k, v in again.items() if k.startswith("llm/")} == totals


def test_preview_is_a_few_rows_on_their_side_flat_and_short(tmp_path, instance):
    defs = build_dataset_definitions(
        EXAMPLES / "customers.yaml",
        num_records=200,
        buffer_size=100,
        resource=DataDesignerResource(artifact_path=str(tmp_path)),
    )
    register_partitions(instance, DagsterDataset.create(EXAMPLES / "customers.yaml", 200, 100))
    run_range(defs, instance, 0, 1, name="customers")
    meta = (
        materialize_dataset(defs, instance, name="customers")
        .get_asset_materialization_events()[0]
        .materialization.metadata
    )
    preview = meta["preview"].value
    assert [c.name for c in preview.schema.columns] == ["column", "row 0", "row 1"]
    lines = {r.data["column"]: r.data for r in preview.records}
    assert "person" not in lines and {"person.first_name", "person.email", "person.age"} <= set(lines)
    assert isinstance(lines["person.age"]["row 0"], int)
    first = pq.read_table(meta["path"].value).slice(0, 1).to_pylist()[0]
    assert lines["region"]["row 0"] == first["region"] and lines["person.email"]["row 0"] == first["person"]["email"]
    assert all(len(v) <= PREVIEW_CHARS for r in preview.records for v in r.data.values() if isinstance(v, str))


def test_preview_cuts_long_text_and_shows_lists_and_odd_numbers_as_text():
    table = pa.table({"text": ["word " * 100], "tags": [["a", "b"]], "ratio": [float("nan")], "n": [2**62]})
    cells = {r.data["column"]: r.data["row 0"] for r in preview(table).value.records}
    assert len(cells["text"]) == PREVIEW_CHARS and cells["text"].endswith("…")
    # 2**62: beyond what a browser holds exactly.
    assert (cells["tags"], cells["ratio"], cells["n"]) == ('["a", "b"]', "nan", str(2**62))


def test_run_config_and_resource_fields_are_described():
    defs = build_dataset_definitions(EXAMPLES / "customers.yaml", num_records=2000, resource=DataDesignerResource())
    job = defs.resolve_job_def("customers_row_groups_job")
    config_type = job.run_config_schema.config_type
    resume = (
        config_type.fields["ops"]
        .config_type.fields["customers_row_groups"]
        .config_type.fields["config"]
        .config_type.fields["resume"]
    )
    assert "if_possible (default): reuse those made under the current config" in resume.description
    resource = (
        config_type.fields["resources"].config_type.fields["data_designer"].config_type.fields["config"].config_type
    )
    for name in ("artifact_path", "models", "generation_worker", "workers"):
        assert resource.fields[name].description, name
    endpoint = DataDesignerResource.model_json_schema()["$defs"]["ModelEndpoint"]["properties"]
    assert all(field.get("description") for field in endpoint.values())
    assert "Example::" not in (DataDesignerResource.__doc__ or "")


def test_a_row_group_reused_from_its_file_alone_still_reports_what_it_cost(tmp_path):
    """A run killed after writing a row group's file but before reporting it leaves the file and
    no materialization; the next run reuses the file. Its materialization, and the combined
    asset's total, must still carry what the row group was paid for (recorded in the file)."""
    price = {"input_per_mtok": 1.0, "output_per_mtok": 2.0}
    with OpenAIServer(latency_ms=2) as server:
        config = chain_config(server.base_url, price=price)
        defs = build_dataset_definitions(
            config, num_records=40, buffer_size=20, resource=DataDesignerResource(artifact_path=str(tmp_path))
        )
        with dg.instance_for_test() as first_instance:
            register_partitions(first_instance, DagsterDataset.create(config, 40, 20))
            made = run_range(defs, first_instance, 0, 1, name="chain").get_asset_materialization_events()
            paid = (
                materialize_dataset(defs, first_instance, name="chain")
                .get_asset_materialization_events()[0]
                .materialization.metadata
            )
        with dg.instance_for_test() as unreported:  # the files are there, Dagster knows none of them
            register_partitions(unreported, DagsterDataset.create(config, 40, 20))
            reused = run_range(defs, unreported, 0, 1, name="chain").get_asset_materialization_events()
            total = (
                materialize_dataset(defs, unreported, name="chain")
                .get_asset_materialization_events()[0]
                .materialization.metadata
            )
        assert server.stats()["succeeded"] == 80  # nothing was asked twice
    assert all(e.materialization.metadata["reused"].value for e in reused)
    costs = {e.partition: e.materialization.metadata["llm/writer/cost_usd"].value for e in made}
    assert len(costs) == 2 and all(cost > 0 for cost in costs.values())
    assert {e.partition: e.materialization.metadata["llm/writer/cost_usd"].value for e in reused} == costs
    assert total["llm/cost_usd"].value == paid["llm/cost_usd"].value > 0
