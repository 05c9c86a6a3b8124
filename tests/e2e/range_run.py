"""``python -m tests.e2e.range_run DAGSTER_HOME START END``: one run of the row-group job of
tests/dagster/env_job.py over a range of row groups, on the SQLite instance in DAGSTER_HOME, in
this process (for tests that kill the run)."""

import sys

import dagster as dg

from tests.dagster.env_job import env_job
from tests.dagster.helpers import QUIET, range_tags

if __name__ == "__main__":
    home, start, end = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    with dg.DagsterInstance.local_temp(home) as instance:
        dg.execute_job(env_job(), instance=instance, tags=range_tags(start, end), run_config=QUIET)
