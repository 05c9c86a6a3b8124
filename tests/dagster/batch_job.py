"""A module-level job builder for the batch-mode Dagster test, so ``dagster.reconstructable``
can rebuild it in another process (and after a SIGKILL, for re-execution)."""

from __future__ import annotations

import os

import dagster as dg

from dd_dagster import DataDesignerResource, build_dataset_definitions
from tests.core.test_llm_columns import chain_config

NUM_RECORDS, BUFFER_SIZE = 40, 20
PRICE = {"input_per_mtok": 2.5, "output_per_mtok": 10.0}


def batch_config() -> dict:
    return chain_config(os.environ["DD_TEST_BASE_URL"], batch=True, batch_poll_interval_s=0.05, price=PRICE)


def batch_defs() -> dg.Definitions:
    config = batch_config()
    # Worker processes allowed (2 row groups, 2 workers): a batch-mode dataset still generates in the run's process.
    resource = DataDesignerResource(artifact_path=os.environ["DD_TEST_ARTIFACTS"], workers=2)
    return build_dataset_definitions(config, num_records=NUM_RECORDS, buffer_size=BUFFER_SIZE, resource=resource)


def chain_row_groups_job():
    return batch_defs().resolve_job_def("chain_row_groups_job")


if __name__ == "__main__":  # the run that gets SIGKILLed: DAGSTER_HOME is the test's instance
    from dd_dagster.dagster_internals import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

    tags = {ASSET_PARTITION_RANGE_START_TAG: "00000", ASSET_PARTITION_RANGE_END_TAG: "00001"}
    with dg.DagsterInstance.get() as instance:
        dg.execute_job(dg.reconstructable(chain_row_groups_job), instance=instance, tags=tags)
