"""Tiny code location used only to test the e2e harness (tests/e2e/dagster_services.py).

Environment (inherited by the run workers from `dagster-daemon`):
- TOY_OUTPUT_DIR: where each partition writes `<key>.txt`.
- TOY_PARTITION_COUNT: how many keys the sensor registers (default 4).
- TOY_SLEEP_SECONDS: how long a held partition sleeps (default 120). A partition sleeps only if
  a `<key>.hold` file exists in TOY_OUTPUT_DIR; the worker renames it to `<key>.sleeping`
  first, so a test knows when to kill the run and a re-execution does not sleep again.
"""

import os
import time
from pathlib import Path

import dagster as dg

toy_rows = dg.DynamicPartitionsDefinition(name="toy_rows")


@dg.asset(
    partitions_def=toy_rows,
    backfill_policy=dg.BackfillPolicy.multi_run(max_partitions_per_run=2),
    code_version="v1",
)
def toy_table(context: dg.AssetExecutionContext) -> None:
    out = Path(os.environ["TOY_OUTPUT_DIR"])
    for key in context.partition_keys:
        hold = out / f"{key}.hold"
        if hold.exists():
            hold.rename(out / f"{key}.sleeping")
            time.sleep(float(os.environ.get("TOY_SLEEP_SECONDS", "120")))
        (out / f"{key}.txt").write_text(f"{key}\n")


@dg.sensor(minimum_interval_seconds=1)
def toy_rows_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
    keys = [f"row-{i:03d}" for i in range(int(os.environ.get("TOY_PARTITION_COUNT", "4")))]
    return dg.SensorResult(dynamic_partitions_requests=[toy_rows.build_add_request(keys)])


toy_job = dg.define_asset_job("toy_job", selection=[toy_table])

defs = dg.Definitions(
    assets=[toy_table],
    sensors=[toy_rows_sensor],
    jobs=[toy_job],
    executor=dg.in_process_executor,
)
