"""A module-level job builder, so ``dagster.reconstructable`` can rebuild the job for re-execution
(and a child process can run it): the row-group job of the dataset the environment describes.

DD_TEST_CONFIG (a config file; default: the tiny config), DD_TEST_NUM_RECORDS (default 500),
DD_TEST_BUFFER_SIZE (default 50), DD_TEST_ARTIFACTS, DD_TEST_WORKERS (default: the resource's).
"""

from __future__ import annotations

import os

import dagster as dg
from dagster._core.definitions.reconstruct import ReconstructableJob

from dd_dagster import DataDesignerResource, build_dataset_definitions
from tests.dagster.helpers import tiny_config


def row_groups_job() -> dg.JobDefinition:
    config = os.environ.get("DD_TEST_CONFIG") or tiny_config()
    workers = os.environ.get("DD_TEST_WORKERS")
    resource = DataDesignerResource(
        artifact_path=os.environ["DD_TEST_ARTIFACTS"], workers=int(workers) if workers else None
    )
    defs = build_dataset_definitions(
        config,
        num_records=int(os.environ.get("DD_TEST_NUM_RECORDS", "500")),
        buffer_size=int(os.environ.get("DD_TEST_BUFFER_SIZE", "50")),
        resource=resource,
    )
    (job,) = [j for j in defs.jobs if j.name.endswith("_row_groups_job")]
    return defs.resolve_job_def(job.name)


def env_job() -> ReconstructableJob:
    """``dagster.reconstructable(row_groups_job)`` for the current environment. Dagster keeps the
    last job it reconstructed in a process (``functools.lru_cache`` on ``ReconstructableJob``,
    keyed on the code pointer, which is the same for every environment): cleared, an earlier
    test's dataset is not run again in this one."""
    ReconstructableJob.get_definition.cache_clear()
    ReconstructableJob.get_repository_definition.cache_clear()
    return dg.reconstructable(row_groups_job)
