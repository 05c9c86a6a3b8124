"""Dagster row groups and the combined dataset on each object store (SeaweedFS, fake-gcs-server,
Azurite): a range run with ``artifact_path`` there equals ``ddsynth generate``, and downstream
assets receive the dataset from there."""

from __future__ import annotations

import pandas as pd
import pytest

from dd_core import load_dataset
from dd_core.orchestration import read_table, storage_path
from dd_dagster import DagsterDataset, DataDesignerResource, build_dataset_definitions, register_partitions
from tests.core.test_remote_seeds import parquet_bytes, seed_table, seeded_config
from tests.dagster.helpers import materialize_dataset, outcome, run_range, tiny_config
from tests.support import run_dd


@pytest.mark.parametrize("storage_root", ["s3", "gs", "az"], indirect=True)
def test_range_run_and_combined_dataset_equal_ddsynth_generate(storage_root, tiny_registered, tmp_path):
    artifacts = f"{storage_root}/dagster"
    defs = build_dataset_definitions(
        tiny_config(), num_records=200, buffer_size=50, resource=DataDesignerResource(artifact_path=artifacts)
    )
    first = run_range(defs, tiny_registered, 0, 3)
    assert outcome(first) == {i: "generated" for i in range(4)}
    paths = [e.materialization.metadata["path"].value for e in first.get_asset_materialization_events()]
    assert all(p.startswith(f"{artifacts}/tiny/") for p in paths)
    assert outcome(run_range(defs, tiny_registered, 0, 3)) == {i: "reused" for i in range(4)}
    result = materialize_dataset(defs, tiny_registered)
    assert all(e.passed for e in result.get_asset_check_evaluations())
    combined = read_table(
        storage_path(result.get_asset_materialization_events()[0].materialization.metadata["path"].value)
    )
    config = tmp_path / "tiny.json"
    config.write_text(pd.Series(tiny_config()).to_json())
    cli = run_dd("generate", config, "-n", 200, "--buffer-size", 50, "--artifact-path", f"{storage_root}/cli")
    assert cli.returncode == 0, cli.stderr
    assert combined.to_pandas().equals(load_dataset(f"{storage_root}/cli/tiny"))


@pytest.mark.parametrize("storage_root", ["s3"], indirect=True)
def test_a_changed_remote_seed_makes_row_groups_stale_and_if_possible_regenerates(storage_root, instance, tmp_path):
    seed = f"{storage_root}/seeds/seed.parquet"
    storage_path(seed).write_atomic(parquet_bytes(seed_table()))
    config = seeded_config(seed, "ordered")
    resource = DataDesignerResource(artifact_path=f"{storage_root}/dagster")
    defs = build_dataset_definitions(config, num_records=200, buffer_size=50, resource=resource)
    register_partitions(instance, DagsterDataset.create(config, 200, 50))
    assert outcome(run_range(defs, instance, 0, 3, name="seeded")) == {i: "generated" for i in range(4)}
    assert outcome(run_range(defs, instance, 0, 3, name="seeded")) == {i: "reused" for i in range(4)}
    storage_path(seed).write_atomic(parquet_bytes(seed_table(salt="-v2")))
    # The code location loads again (as Dagster does): the seed's new content is a new fingerprint.
    defs = build_dataset_definitions(config, num_records=200, buffer_size=50, resource=resource)
    assert outcome(run_range(defs, instance, 0, 3, name="seeded")) == {i: "generated" for i in range(4)}
