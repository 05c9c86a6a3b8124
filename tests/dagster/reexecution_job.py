"""A module-level job builder, so ``dagster.reconstructable`` can rebuild the job for re-execution."""

from __future__ import annotations

import os

from tests.dagster.helpers import tiny_defs


def tiny_row_groups_job():
    return tiny_defs(os.environ["DD_TEST_ARTIFACTS"], num_records=500).resolve_job_def("tiny_row_groups_job")
