"""The example datasets of this folder as one Dagster code location (``workspace.yaml`` serves it;
so does the Kubernetes image: ``dagster api grpc -f examples/definitions.py``).

Environment: ``DD_ARTIFACT_PATH`` (default ``artifacts/dagster`` in the working directory),
``DD_LLM_BASE_URL`` / ``DD_LLM_API_KEY`` to point the LLM example's model at a real endpoint
(by default it expects the local test server: ``python -m dd_core.testing.llm_server --port 8000``).
``DD_ARTIFACT_PATH`` may be a bucket: ``s3://bucket/prefix``, ``gs://bucket/prefix``, ``az://container/prefix``.

``customers_by_city`` shows a downstream asset: its parameter ``customers``, annotated
``pd.DataFrame``, receives the combined customers dataset (``pa.Table``, ``pl.LazyFrame`` and
``str`` work too).
"""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg
import pandas as pd

from dd_dagster import DataDesignerResource, ModelEndpoint, build_dataset_definitions

EXAMPLES = Path(__file__).resolve().parent


def example_resource() -> DataDesignerResource:
    writer = ModelEndpoint(
        base_url=os.environ.get("DD_LLM_BASE_URL"),
        api_key=dg.EnvVar("DD_LLM_API_KEY") if os.environ.get("DD_LLM_API_KEY") else None,
    )
    return DataDesignerResource(
        artifact_path=os.environ.get("DD_ARTIFACT_PATH", "artifacts/dagster"), models={"writer": writer}
    )


@dg.asset(
    group_name="customers",
    description="Customers and their mean score per region and city, from the customers dataset.",
)
def customers_by_city(customers: pd.DataFrame) -> dg.MaterializeResult:
    summary = customers.groupby(["region", "city"]).agg(customers=("record_id", "count"), mean_score=("score", "mean"))
    table = "| region | city | customers | mean score |\n|---|---|---:|---:|\n" + "".join(
        f"| {region} | {city} | {int(row.customers):,} | {row.mean_score:.2f} |\n"
        for (region, city), row in summary.iterrows()
    )
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": len(summary),
            "customers": int(summary.customers.sum()),
            "summary": dg.MetadataValue.md(table),
        }
    )


resource = example_resource()
defs = dg.Definitions.merge(
    build_dataset_definitions(
        EXAMPLES / "customers.yaml", num_records=10_000, buffer_size=1_000, refresh_cron="0 3 * * *", resource=resource
    ),
    build_dataset_definitions(
        EXAMPLES / "orders_from_seed.yaml", num_records=5_000, buffer_size=500, resource=resource
    ),
    build_dataset_definitions(
        EXAMPLES / "support_tickets_llm.yaml", num_records=200, buffer_size=50, row_groups_per_run=2, resource=resource
    ),
    dg.Definitions(assets=[customers_by_city]),
)
