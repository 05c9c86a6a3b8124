"""Code location for end-to-end tests: one dd dataset, configured by environment variables.

DD_E2E_CONFIG (config path), DD_E2E_NUM_RECORDS, DD_E2E_BUFFER_SIZE, DD_E2E_ROW_GROUPS_PER_RUN,
DD_E2E_ARTIFACTS (artifact path), and optionally DD_E2E_LLM_ALIAS + DD_E2E_LLM_BASE_URL to point
one model alias at a local OpenAI-compatible server, and DD_E2E_WORKERS (the resource's workers).
"""

import os

from dd_dagster import DataDesignerResource, ModelEndpoint, build_dataset_definitions

_models = {}
if os.environ.get("DD_E2E_LLM_ALIAS"):
    _models[os.environ["DD_E2E_LLM_ALIAS"]] = ModelEndpoint(base_url=os.environ["DD_E2E_LLM_BASE_URL"])

defs = build_dataset_definitions(
    os.environ["DD_E2E_CONFIG"],
    num_records=int(os.environ["DD_E2E_NUM_RECORDS"]),
    buffer_size=int(os.environ["DD_E2E_BUFFER_SIZE"]),
    row_groups_per_run=int(os.environ.get("DD_E2E_ROW_GROUPS_PER_RUN", "10")),
    resource=DataDesignerResource(
        artifact_path=os.environ["DD_E2E_ARTIFACTS"],
        models=_models,
        workers=int(os.environ["DD_E2E_WORKERS"]) if os.environ.get("DD_E2E_WORKERS") else None,
    ),
)
