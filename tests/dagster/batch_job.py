"""A module-level job builder for the batch-mode Dagster test, so ``dagster.reconstructable``
can rebuild it in another process (and after a SIGKILL, for re-execution). ``DD_TEST_PROVIDER``
picks the provider (openai, azure, anthropic); an Azure or Anthropic model is reached through the
resource's endpoint override (its base URL, API version, deployment and key as an ``EnvVar``)."""

from __future__ import annotations

import os

import dagster as dg

from dd_dagster import DataDesignerResource, ModelEndpoint, build_dataset_definitions
from tests.core.test_llm_columns import chain_config
from tests.providers import API_VERSION, KEY_ENV, SETTINGS, varied_chain

NUM_RECORDS, BUFFER_SIZE = 40, 20
PRICE = {"input_per_mtok": 2.5, "output_per_mtok": 10.0}
#: The config's own endpoint for a model reached through the override (never called).
NOWHERE = "https://example.invalid"


def provider() -> str:
    return os.environ.get("DD_TEST_PROVIDER", "openai")


def batch_config() -> dict:
    batch = {"batch": True, "batch_poll_interval_s": 0.05, "price": PRICE}
    if provider() == "openai":
        return chain_config(os.environ["DD_TEST_BASE_URL"], **batch)
    settings = {k: v for k, v in SETTINGS[provider()].items() if k != "api_key_env"}
    config = varied_chain(NOWHERE)
    config["models"][0].update(settings, **batch)
    return config


def model_endpoints() -> dict[str, ModelEndpoint]:
    if provider() == "openai":
        return {}
    endpoint = ModelEndpoint(
        provider=provider(),
        base_url=os.environ["DD_TEST_BASE_URL"],
        api_key=dg.EnvVar(KEY_ENV),
        **({"api_version": API_VERSION, "deployment": "test-model"} if provider() == "azure" else {}),
    )
    return {"writer": endpoint}


def batch_defs() -> dg.Definitions:
    config = batch_config()
    # Worker processes allowed (2 row groups, 2 workers): a batch-mode dataset still generates in the run's process.
    resource = DataDesignerResource(artifact_path=os.environ["DD_TEST_ARTIFACTS"], workers=2, models=model_endpoints())
    return build_dataset_definitions(config, num_records=NUM_RECORDS, buffer_size=BUFFER_SIZE, resource=resource)


def chain_row_groups_job() -> dg.JobDefinition:
    return batch_defs().resolve_job_def("chain_row_groups_job")


# One module-level function per provider: Dagster keeps a job it has loaded from a function for
# the rest of the process, so each test of the process re-executes through its own.
def openai_job() -> dg.JobDefinition:
    return chain_row_groups_job()


def azure_job() -> dg.JobDefinition:
    return chain_row_groups_job()


def anthropic_job() -> dg.JobDefinition:
    return chain_row_groups_job()


JOBS = {"openai": openai_job, "azure": azure_job, "anthropic": anthropic_job}


if __name__ == "__main__":  # the run that gets SIGKILLed: DAGSTER_HOME is the test's instance
    from dd_dagster.dagster_internals import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

    tags = {ASSET_PARTITION_RANGE_START_TAG: "00000", ASSET_PARTITION_RANGE_END_TAG: "00001"}
    with dg.DagsterInstance.get() as instance:
        dg.execute_job(dg.reconstructable(JOBS[provider()]), instance=instance, tags=tags)
