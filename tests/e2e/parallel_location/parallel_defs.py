"""Code location for tests/e2e/test_parallel_runs.py: one dd config served as several datasets.

Like ../dd_location/dd_defs.py (DD_E2E_CONFIG, DD_E2E_NUM_RECORDS, DD_E2E_BUFFER_SIZE,
DD_E2E_ARTIFACTS, optional DD_E2E_LLM_ALIAS + DD_E2E_LLM_BASE_URL), plus DD_E2E_DATASETS: the
datasets to define, as comma-separated ``name:row_groups_per_run`` pairs (e.g.
``parallel:2,twice:12``). They share one resource, hence one artifact path and model endpoint.
"""

import os

import dagster as dg

from dd_dagster import DataDesignerResource, ModelEndpoint, build_dataset_definitions

_models = {}
if os.environ.get("DD_E2E_LLM_ALIAS"):
    _models[os.environ["DD_E2E_LLM_ALIAS"]] = ModelEndpoint(base_url=os.environ["DD_E2E_LLM_BASE_URL"])
_resource = DataDesignerResource(artifact_path=os.environ["DD_E2E_ARTIFACTS"], models=_models)


def _dataset(spec: str) -> dg.Definitions:
    name, _, per_run = spec.partition(":")
    return build_dataset_definitions(
        os.environ["DD_E2E_CONFIG"],
        num_records=int(os.environ["DD_E2E_NUM_RECORDS"]),
        buffer_size=int(os.environ["DD_E2E_BUFFER_SIZE"]),
        dataset_name=name.strip(),
        row_groups_per_run=int(per_run),
        resource=_resource,
    )


defs = dg.Definitions.merge(*(_dataset(spec) for spec in os.environ["DD_E2E_DATASETS"].split(",")))
