"""A Dagster user's flow through dd (issue 11), over GraphQL as the UI drives it, against a real
dagster-webserver and dagster-daemon (SQLite, temporary DAGSTER_HOME) and a local
OpenAI-compatible server:

1. Before any run, the asset pages show the column schema with each column's generator, the
   config text and a reference to its file; the row-group asset has its own check; run config
   and resource fields are described. The example components project loads beside it.
2. A partition key that names no row group ("foo") fails with the valid range.
3. The regeneration sensor, turned on, materializes the missing row groups; every run ends
   with the row-group check; the combined asset carries numeric LLM usage totals.
4. After an output-affecting config change (and a code location reload): partitions are
   STALE, the check run alone fails listing them, the combined asset (what "Materialize
   unsynced" selects) refuses without writing a file or a materialization.
5. The sensor, turned on again, regenerates exactly the stale row groups; the check passes;
   the combined asset equals `ddsynth generate` of the new config.

Code locations: tests/e2e/dd_location (one dataset, configured by environment variables) and
examples/dd_components (two datasets from one defs.yaml). About 4-5 minutes, most of it the
sensor's 30 s interval and the daemon's 60 s workspace refresh after the reload.
"""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml

from dd_core import fingerprint, load_config
from dd_core.testing.llm_server import OpenAIServerProcess
from tests.e2e.asset_graphql import (
    add_partition,
    asset_definition,
    check_executions,
    config_field_descriptions,
    delete_partitions,
    launch_asset_run,
    materializations,
    reload_location,
    resources,
    run_events,
)
from tests.e2e.dagster_services import (
    TERMINAL_RUN_STATUSES,
    DagsterServices,
    launch_job_run,
    partition_keys,
    poll,
    processes_using_dagster_home,
    sqlite_instance_config,
    stale_status_by_partition,
    start_sensor,
    stop_sensor,
    wait_for_run_status,
)
from tests.support import dd_generate_dataset

pytestmark = pytest.mark.e2e

NAME = "flow"
LOCATION = "dd_e2e"
COMPONENTS = "dd_components"
NUM_RECORDS, BUFFER_SIZE, PER_RUN = 80, 20, 2  # 4 row groups, 2 per run
KEYS = [f"{i:05d}" for i in range(4)]
ROW_GROUPS, COMBINED = [f"{NAME}_row_groups"], [NAME]
CHECK = "row_groups_current"
REGENERATE = f"{NAME}_regenerate_stale"
LOCATION_FILE = Path(__file__).parent / "dd_location" / "dd_defs.py"
EXAMPLE_PROJECT = Path(__file__).resolve().parents[2] / "examples" / "dd_components"


def flow_config(base_url: str, high: int) -> dict:
    """``high`` changes the data (and the prompts: the LLM column reads the score)."""
    return {
        "name": NAME,
        "seed": 3,
        "models": [{"alias": "writer", "model": "test-model", "base_url": base_url, "max_parallel_requests": 8}],
        "columns": [
            {
                "name": "topic",
                "type": "category",
                "values": ["cats", "ships", "tea"],
                "description": "What the note is about",
            },
            {"name": "score", "type": "uniform", "low": 0, "high": high, "dtype": "int"},
            {
                "name": "note",
                "type": "llm_text",
                "model": "writer",
                "prompt": "One sentence about {{ topic }}, rated {{ score }}.",
            },
            {"name": "label", "type": "expression", "expr": "{{ topic }}-{{ score }}"},
        ],
    }


@pytest.fixture(scope="module")
def flow(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ui-flow")
    with OpenAIServerProcess(latency_ms=5) as llm:
        config_path = tmp / "flow.yaml"
        config_path.write_text(yaml.safe_dump(flow_config(llm.base_url, 100), sort_keys=False))
        workspace = tmp / "workspace.yaml"
        workspace.write_text(yaml.safe_dump({"load_from": [
            {"python_file": {"relative_path": str(LOCATION_FILE), "location_name": LOCATION}},
            {"python_module": {"module_name": "dd_components.definitions", "location_name": COMPONENTS, "working_directory": str(EXAMPLE_PROJECT)}},
        ]}))  # fmt: skip
        env = {
            "DD_E2E_CONFIG": str(config_path),
            "DD_E2E_NUM_RECORDS": str(NUM_RECORDS),
            "DD_E2E_BUFFER_SIZE": str(BUFFER_SIZE),
            "DD_E2E_ROW_GROUPS_PER_RUN": str(PER_RUN),
            "DD_E2E_ARTIFACTS": str(tmp / "artifacts"),
            "DD_E2E_LLM_ALIAS": "writer",
            "DD_E2E_LLM_BASE_URL": llm.base_url,
        }
        home = tmp / "dagster-home"
        with DagsterServices(home, workspace, instance_config=sqlite_instance_config(), env=env) as svc:
            yield {"svc": svc, "llm": llm, "config": config_path, "artifacts": tmp / "artifacts" / NAME, "tmp": tmp}
    assert processes_using_dagster_home(home) == []


def test_dagster_user_flow(flow):
    svc, config_path = flow["svc"], flow["config"]
    started = time.time()
    v1_hash = fingerprint(load_config(config_path))["config_hash"]

    # 1. Before any run: what the asset pages, the launchpad and the resources page show.
    row_groups, combined = asset_definition(svc, ROW_GROUPS), asset_definition(svc, COMBINED)
    for node, names in (
        (row_groups, ["topic", "score", "note", "label"]),
        (combined, ["topic", "score", "note", "label"]),
    ):
        columns = {c["name"]: c for c in node["metadata"]["dagster/column_schema"]}
        assert list(columns) == names
        assert columns["topic"]["description"] == "What the note is about (category: cats, ships, tea)"
        assert columns["score"] == {"name": "score", "type": "int64", "description": "uniform int in [0, 100]"}
        assert columns["note"]["description"].startswith(
            "llm_text by model 'writer' (test-model); prompt: One sentence about"
        )
        assert node["metadata"]["config"] == f"```yaml\n{config_path.read_text().rstrip()}\n```"
        assert [ref["filePath"] for ref in node["metadata"]["dagster/code_references"]] == [str(config_path)]
        assert node["metadata"]["config_hash"] == v1_hash and node["opVersion"] == v1_hash
        assert node["groupName"] == NAME and "parquet" in node["kinds"]
    assert (
        row_groups["checks"][CHECK]["canExecuteIndividually"] == "CAN_EXECUTE"
        and not row_groups["checks"][CHECK]["blocking"]
    )
    assert set(combined["checks"]) == {"row_count_matches"}
    described = config_field_descriptions(svc, f"{NAME}_row_groups_job", location=LOCATION)
    for field in (
        "resume",
        "artifact_path",
        "models",
        "generation_worker",
        "workers",
        "base_url",
        "api_key",
        "max_parallel_requests",
        "timeout_s",
    ):
        assert all(described[field]), f"{field} has no description in the launchpad: {described.get(field)}"
    assert "if_possible (default)" in next(iter(described["resume"]))
    # The example components project: two datasets from one defs.yaml, each with its own resource.
    accounts = asset_definition(svc, ["accounts_row_groups"])
    assert accounts["owners"] == ["synthetic-data"]  # team:synthetic-data and accounts["checks"].keys() == {CHECK}
    assert [c["name"] for c in accounts["metadata"]["dagster/column_schema"]][:2] == ["plan", "seats"]
    assert asset_definition(svc, ["reviews"])["groupName"] == "llm_datasets"
    component_resources = resources(svc, location=COMPONENTS)
    # Each component's resource, and the I/O manager that hands the combined dataset to downstream assets.
    assert set(component_resources) == {"accounts_data_designer", "reviews_data_designer", "dd_dataset_io_manager"}
    assert all(f["description"] for f in component_resources["reviews_data_designer"]["configFields"])
    _phase(started, "definitions checked")

    # 2. The registration sensor adds the 4 keys; a key added by hand fails with the valid range.
    poll(svc, lambda: partition_keys(svc, ROW_GROUPS), lambda keys: keys == KEYS, 120, "the row groups' partitions")
    add_partition(svc, f"{NAME}_row_groups", "foo", location=LOCATION)
    bad_run = launch_job_run(svc, f"{NAME}_row_groups_job", location=LOCATION, partition_key="foo")
    assert wait_for_run_status(svc, bad_run, TERMINAL_RUN_STATUSES)["status"] == "FAILURE"
    [failure] = run_events(svc, bad_run)["failures"]
    assert failure["description"].startswith(
        "partition key(s) 'foo' name no row group of flow: valid keys are 00000..00003"
    ), failure
    delete_partitions(svc, f"{NAME}_row_groups", ["foo"], location=LOCATION)
    _phase(started, "bad partition key refused")

    # 3. The regeneration sensor materializes the missing row groups, two per run.
    runs = _regenerate(svc, started, expected_runs=2)
    evaluations = [e for run in runs for e in run_events(svc, run)["checks"]]
    assert len(evaluations) == 2 and all(e["checkName"] == CHECK for e in evaluations)
    assert sorted((e["success"], e["meta"]["current"]) for e in evaluations)[-1] == (True, 4)  # the later run saw all 4
    latest = check_executions(svc, ROW_GROUPS, CHECK)[0]
    assert latest["status"] == "SUCCEEDED" and latest["evaluation"]["meta"]["current"] == 4
    first = _combine(svc, started)
    per_row_group = materializations(svc, ROW_GROUPS)
    assert all(
        isinstance(m["meta"]["llm/writer/calls"], int) and isinstance(m["meta"]["llm/writer/request_seconds"], float)
        for m in per_row_group
    )
    assert first["meta"]["llm/writer/calls"] == sum(m["meta"]["llm/writer/calls"] for m in per_row_group) == NUM_RECORDS
    assert (
        first["meta"]["llm/writer/prompt_tokens"]
        == sum(m["meta"]["llm/writer/prompt_tokens"] for m in per_row_group)
        > 0
    )
    v1_file = Path(first["meta"]["path"])
    v1_bytes = v1_file.read_bytes()

    # 4. An output-affecting change, then "Reload" in the UI.
    stop_sensor(svc, REGENERATE, location=LOCATION)
    config_path.write_text(yaml.safe_dump(flow_config(flow["llm"].base_url, 50), sort_keys=False))
    v2_hash = fingerprint(load_config(config_path))["config_hash"]
    reload_location(svc, LOCATION)
    assert asset_definition(svc, ROW_GROUPS)["opVersion"] == v2_hash
    assert stale_status_by_partition(svc, ROW_GROUPS, KEYS) == dict.fromkeys(KEYS, "STALE")
    check_run = launch_asset_run(svc, checks=[(ROW_GROUPS, CHECK)], location=LOCATION)  # the check's "Execute" button
    assert wait_for_run_status(svc, check_run, TERMINAL_RUN_STATUSES)["status"] == "SUCCESS"
    [stale] = run_events(svc, check_run)["checks"]
    assert (stale["success"], stale["severity"], stale["meta"]["stale"], stale["meta"]["stale_keys"]) == (
        False,
        "ERROR",
        4,
        ", ".join(KEYS),
    )
    assert check_executions(svc, ROW_GROUPS, CHECK)[0]["status"] == "FAILED"
    refused_run = launch_asset_run(svc, [COMBINED], location=LOCATION)  # what "Materialize unsynced" selects
    assert wait_for_run_status(svc, refused_run, TERMINAL_RUN_STATUSES)["status"] == "FAILURE"
    [refusal] = run_events(svc, refused_run)["failures"]
    assert refusal["description"].startswith(
        "flow was not combined (nothing was written): 4 of 4 row groups are not current: 4 stale (00000, 00001, 00002, 00003)"
    )
    assert (
        REGENERATE in refusal["description"]
        and refusal["meta"]["stale"] == 4
        and refusal["meta"]["current_config_hash"] == v2_hash
    )
    assert [m["meta"]["config_hash"] for m in materializations(svc, COMBINED)] == [v1_hash]
    assert (
        sorted(p.name for p in flow["artifacts"].rglob("dataset.parquet")) == ["dataset.parquet"]
        and v1_file.read_bytes() == v1_bytes
    )
    _phase(started, "stale row groups visible, combined asset refused")

    # 5. Turned on again, the sensor regenerates exactly the stale row groups.
    runs = _regenerate(svc, started, expected_runs=2)
    regenerated = [m for m in materializations(svc, ROW_GROUPS) if m["runId"] in runs]
    assert sorted(m["partition"] for m in regenerated) == KEYS and not any(m["meta"]["reused"] for m in regenerated)
    assert check_executions(svc, ROW_GROUPS, CHECK)[0]["status"] == "SUCCEEDED"
    assert stale_status_by_partition(svc, ROW_GROUPS, KEYS) == dict.fromkeys(KEYS, "FRESH")
    second = _combine(svc, started)
    # Rows whose prompt did not change are answered from the response cache, not paid again.
    assert (
        second["meta"]["config_hash"] == v2_hash
        and second["meta"]["llm/writer/calls"] + second["meta"]["llm/writer/cache_hits"] == NUM_RECORDS
    )
    combined_v2 = pq.read_table(second["meta"]["path"]).replace_schema_metadata(None).to_pandas()
    pd.testing.assert_frame_equal(
        combined_v2, dd_generate_dataset(config_path, flow["tmp"] / "standalone", NUM_RECORDS, BUFFER_SIZE)
    )
    assert v1_file.read_bytes() == v1_bytes  # the old version's file is untouched
    _phase(started, "regenerated and combined")


def _regenerate(svc: DagsterServices, started: float, expected_runs: int) -> list[str]:
    """Turn the regeneration sensor on and wait until its runs have finished; returns their ids."""
    turned_on = time.time()
    # After a reload the daemon may evaluate the sensor with the old code for up to 60 s (its
    # workspace refresh): such ticks find nothing stale and skip.
    start_sensor(svc, REGENERATE, location=LOCATION)
    runs = poll(
        svc,
        lambda: _sensor_runs(svc, turned_on),
        lambda ids: len(ids) >= expected_runs,
        200,
        f"{expected_runs} runs of {REGENERATE}",
        interval=2,
    )
    for run_id in runs:
        assert wait_for_run_status(svc, run_id, TERMINAL_RUN_STATUSES, timeout=180)["status"] == "SUCCESS", svc.logs()
    stop_sensor(svc, REGENERATE, location=LOCATION)
    _phase(started, f"{REGENERATE} made {len(runs)} runs")
    return runs


_SENSOR_RUNS = (
    """query($f: RunsFilter) { runsOrError(filter: $f) { ... on Runs { results { runId creationTime } } } }"""
)


def _sensor_runs(svc: DagsterServices, since: float) -> list[str]:
    runs = svc.graphql(_SENSOR_RUNS, {"f": {"tags": [{"key": "dd/regenerate", "value": NAME}]}})["runsOrError"][
        "results"
    ]
    return [r["runId"] for r in runs if r["creationTime"] >= since]


def _combine(svc: DagsterServices, started: float) -> dict:
    run_id = launch_asset_run(svc, [COMBINED], location=LOCATION)
    assert wait_for_run_status(svc, run_id, TERMINAL_RUN_STATUSES, timeout=180)["status"] == "SUCCESS", svc.logs()
    latest = materializations(svc, COMBINED)[0]
    assert latest["runId"] == run_id and latest["meta"]["dagster/row_count"] == NUM_RECORDS
    _phase(started, "combined asset materialized")
    return latest


def _phase(started: float, what: str) -> None:
    print(f"[{time.time() - started:6.1f} s] {what}", flush=True)
