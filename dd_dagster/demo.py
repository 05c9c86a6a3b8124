"""Materialize a dataset config through Dagster on the local instance (``make demo`` runs it on
``examples/customers.yaml``):

    python -m dd_dagster.demo CONFIG --num-records N --buffer-size B [--artifact-path DIR]

Registers the row-group partitions, runs every row group in one in-process run (a range),
materializes the combined dataset with its checks, and prints where the data is. The asset keys
are the ones a code location built from the same config and target shows (``make ui`` serves
``examples/definitions.py``), so the UI shows the demo's materializations.
"""

from __future__ import annotations

import argparse
import sys

import dagster as dg

from dd_dagster.automation import register_partitions
from dd_dagster.dagster_internals import range_tags
from dd_dagster.dataset import DagsterDataset
from dd_dagster.factory import build_dataset_definitions
from dd_dagster.resource import DataDesignerResource

#: Dagster's console logger prints every event at DEBUG; the demo shows warnings only.
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("config", help="dataset config (YAML or JSON)")
    ap.add_argument("--num-records", type=int, default=10_000)
    ap.add_argument("--buffer-size", type=int, default=1_000)
    ap.add_argument(
        "--artifact-path",
        default="artifacts/dagster",
        help="where datasets go (as the example code location's default)",
    )
    args = ap.parse_args()
    dataset = DagsterDataset.create(args.config, args.num_records, args.buffer_size)
    resource = DataDesignerResource(artifact_path=args.artifact_path)
    defs = build_dataset_definitions(
        args.config, num_records=args.num_records, buffer_size=args.buffer_size, resource=resource
    )
    instance = dg.DagsterInstance.get()
    register_partitions(instance, dataset)
    keys = dataset.partition_keys
    job = defs.resolve_job_def(f"{dataset.name}_row_groups_job")
    tags = range_tags(keys[0], keys[-1])
    print(
        f"Materializing {len(keys)} row groups of {dataset.name} on the Dagster instance in {instance.root_directory} ..."
    )
    run = job.execute_in_process(instance=instance, tags=tags, run_config=QUIET, raise_on_error=False)
    if not run.success:
        sys.exit(f"row-group run {run.run_id} failed; see `make ui`")
    reused = sum(bool(e.materialization.metadata["reused"].value) for e in run.get_asset_materialization_events())
    combined = dg.materialize(
        [defs.resolve_assets_def(dg.AssetKey([dataset.name]))],
        instance=instance,
        run_config=QUIET,
        raise_on_error=False,
    )
    checks = {e.check_name: e.passed for e in combined.get_asset_check_evaluations()}
    path = dataset.combined_path(resource.artifact_path)
    print(f"{dataset.name}: {len(keys)} row groups ({reused} reused from earlier runs), checks {checks}")
    print(f"Dataset: {path}")
    print(f"Dagster instance: {instance.root_directory} -- open the UI with `make ui` (http://127.0.0.1:3000)")
    if not combined.success or not all(checks.values()):
        sys.exit(1)


if __name__ == "__main__":
    main()
