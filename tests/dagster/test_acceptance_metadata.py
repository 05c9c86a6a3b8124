"""Each row-group materialization of a dataset with an acceptance rule carries its candidates,
accepted and rate as numbers (Dagster plots them per partition); a reused row group reports
them again, and the combined asset sums them."""

from __future__ import annotations

from dd_core.testing.llm_server import OpenAIServer
from dd_dagster import DagsterDataset, DataDesignerResource, build_dataset_definitions, register_partitions
from tests.core.test_acceptance import accepted_config
from tests.dagster.helpers import materialize_dataset, outcome, run_range


def test_acceptance_figures_per_partition_and_in_total(tmp_path, instance):
    with OpenAIServer(latency_ms=2) as server:
        config = accepted_config(server.base_url)
        defs = build_dataset_definitions(
            config, num_records=60, buffer_size=20, resource=DataDesignerResource(artifact_path=str(tmp_path))
        )
        register_partitions(instance, DagsterDataset.create(config, 60, 20))
        first = run_range(defs, instance, 0, 2, name="accepted")
        again = run_range(defs, instance, 0, 2, name="accepted")
        combined = materialize_dataset(defs, instance, name="accepted")

    assert outcome(first) == {0: "generated", 1: "generated", 2: "generated"}
    assert outcome(again) == {0: "reused", 1: "reused", 2: "reused"}
    by_partition = {
        e.partition: {k: v.value for k, v in e.materialization.metadata.items() if k.startswith("acceptance/")}
        for e in first.get_asset_materialization_events()
    }
    for figures in by_partition.values():
        assert isinstance(figures["acceptance/candidates"], int) and figures["acceptance/candidates"] > 20
        assert figures["acceptance/accepted"] >= 20 and figures["acceptance/failed"] == 0
        assert figures["acceptance/rate"] == round(figures["acceptance/accepted"] / figures["acceptance/candidates"], 4)
    reused = {
        e.partition: {k: v.value for k, v in e.materialization.metadata.items() if k.startswith("acceptance/")}
        for e in again.get_asset_materialization_events()
    }
    assert reused == by_partition
    total = combined.get_asset_materialization_events()[0].materialization.metadata
    candidates = sum(f["acceptance/candidates"] for f in by_partition.values())
    accepted = sum(f["acceptance/accepted"] for f in by_partition.values())
    assert total["acceptance/candidates"].value == candidates and total["acceptance/accepted"].value == accepted
    assert total["acceptance/rate"].value == round(accepted / candidates, 4)
    assert total["dagster/row_count"].value == 60
