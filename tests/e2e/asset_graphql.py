"""What the UI reads about assets, checks, runs and config, over GraphQL: the queries behind
the asset pages, the launchpad and the "Materialize" and "Execute check" buttons.

Generic over code locations; takes a `DagsterServices` (or any `graphql(query, variables)`
callable) like tests/e2e/dagster_services.py, whose process and polling helpers it uses.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from tests.e2e.dagster_services import DagsterServiceError, Target, _expect, _graphql, repository_selector

# Every metadata entry type dd writes, and the field holding its value.
_META = """metadataEntries { label __typename
  ... on BoolMetadataEntry { boolValue } ... on IntMetadataEntry { intRepr }
  ... on FloatMetadataEntry { floatRepr } ... on TextMetadataEntry { text }
  ... on PathMetadataEntry { path } ... on MarkdownMetadataEntry { mdStr } ... on JsonMetadataEntry { jsonString }
  ... on TableSchemaMetadataEntry { schema { columns { name type description } } }
  ... on TableMetadataEntry { table { records schema { columns { name type } } } }
  ... on CodeReferencesMetadataEntry { codeReferences { ... on LocalFileCodeReference { filePath lineNumber label } } }
}"""


def metadata(entries: list[dict]) -> dict[str, Any]:
    """label -> value; numbers keep their GraphQL type (IntMetadataEntry -> int, Float -> float)."""
    values: dict[str, Any] = {}
    for entry in entries:
        kind = entry["__typename"]
        if kind == "IntMetadataEntry":
            value: Any = int(entry["intRepr"])
        elif kind == "FloatMetadataEntry":
            value = float(entry["floatRepr"])
        elif kind == "TableSchemaMetadataEntry":
            value = entry["schema"]["columns"]
        elif kind == "TableMetadataEntry":
            value = [json.loads(r) for r in entry["table"]["records"]]
        elif kind == "CodeReferencesMetadataEntry":
            value = entry["codeReferences"]
        else:
            value = next((entry[f] for f in ("boolValue", "text", "path", "mdStr", "jsonString") if f in entry), None)
        values[entry["label"]] = value
    return values


_ASSET_DEFINITION = f"""
query($key: AssetKeyInput!) {{ assetNodeOrError(assetKey: $key) {{ __typename
  ... on AssetNode {{ description groupName kinds opVersion isPartitioned
    owners {{ ... on TeamAssetOwner {{ team }} ... on UserAssetOwner {{ email }} }}
    tags {{ key value }} {_META}
    assetChecksOrError {{ ... on AssetChecks {{ checks {{ name description blocking canExecuteIndividually }} }} }}
  }}
  ... on Error {{ message }}
}} }}
"""


def asset_definition(svc: Target, asset_path: Sequence[str]) -> dict:
    """Definition-time facts of an asset (no run needed): description, group, owners, kinds,
    metadata (label -> value) and checks (name -> {description, blocking, canExecuteIndividually})."""
    node = _expect(
        _graphql(svc)(_ASSET_DEFINITION, {"key": {"path": list(asset_path)}})["assetNodeOrError"],
        "AssetNode",
        "assetNodeOrError",
    )
    node["metadata"] = metadata(node.pop("metadataEntries"))
    node["owners"] = [owner.get("team") or owner.get("email") for owner in node["owners"]]
    node["checks"] = {c["name"]: c for c in (node.pop("assetChecksOrError") or {}).get("checks", [])}
    return node


_MATERIALIZATIONS = f"""
query($key: AssetKeyInput!) {{ assetOrError(assetKey: $key) {{
  __typename ... on Asset {{ assetMaterializations {{ partition runId tags {{ key value }} {_META} }} }}
  ... on Error {{ message }}
}} }}
"""


def materializations(svc: Target, asset_path: Sequence[str]) -> list[dict]:
    """Every materialization of the asset (newest first): partition, runId, tags and metadata as dicts."""
    asset = _graphql(svc)(_MATERIALIZATIONS, {"key": {"path": list(asset_path)}})["assetOrError"]
    if asset["__typename"] == "AssetNotFoundError":
        return []
    asset = _expect(asset, "Asset", "assetOrError")
    return [
        {
            "partition": event["partition"],
            "runId": event["runId"],
            "tags": {tag["key"]: tag["value"] for tag in event["tags"]},
            "meta": metadata(event["metadataEntries"]),
        }
        for event in asset["assetMaterializations"]
    ]


_LAUNCH_RUN = """
mutation($p: ExecutionParams!) { launchRun(executionParams: $p) {
  __typename ... on LaunchRunSuccess { run { runId } }
  ... on Error { message } ... on PythonError { message stack }
  ... on PipelineConfigValidationInvalid { errors { message } }
} }
"""


def launch_asset_run(
    svc: Target,
    assets: Sequence[Sequence[str]] = (),
    checks: Sequence[tuple[Sequence[str], str]] = (),
    *,
    location: str | None = None,
    tags: dict[str, str] | None = None,
) -> str:
    """Launch a run of the implicit asset job as the UI's "Materialize" (assets, their checks
    included) or a check's "Execute" button (checks only) does; returns the run id."""
    selector = {
        **repository_selector(svc, location),
        "jobName": "__ASSET_JOB",
        "assetSelection": [{"path": list(a)} for a in assets],
    }
    if checks:  # else the selected assets' own checks run with them
        selector["assetCheckSelection"] = [{"assetKey": {"path": list(a)}, "name": name} for a, name in checks]
    execution_tags = [{"key": k, "value": v} for k, v in (tags or {}).items()]
    params = {"selector": selector, "runConfigData": {}, "executionMetadata": {"tags": execution_tags}}
    result = _graphql(svc)(_LAUNCH_RUN, {"p": params})["launchRun"]
    return _expect(result, "LaunchRunSuccess", "launchRun")["run"]["runId"]


_RUN_EVENTS = f"""
query($id: ID!) {{ logsForRun(runId: $id, limit: 1000) {{ __typename ... on EventConnection {{ events {{
  __typename
  ... on AssetCheckEvaluationEvent {{ evaluation {{ checkName success severity description {_META} }} }}
  ... on ExecutionStepFailureEvent {{ stepKey error {{ message }} failureMetadata {{ description {_META} }} }}
}} }} }} }}
"""


def run_events(svc: Target, run_id: str) -> dict[str, list[dict]]:
    """{"checks": [{checkName, success, severity, description, meta}], "failures": [{stepKey, message, description, meta}]}."""
    logs = _expect(_graphql(svc)(_RUN_EVENTS, {"id": run_id})["logsForRun"], "EventConnection", "logsForRun")
    checks, failures = [], []
    for event in logs["events"]:
        if event["__typename"] == "AssetCheckEvaluationEvent":
            evaluation = dict(event["evaluation"])
            evaluation["meta"] = metadata(evaluation.pop("metadataEntries"))
            checks.append(evaluation)
        elif event["__typename"] == "ExecutionStepFailureEvent":
            failure = event["failureMetadata"] or {"description": None, "metadataEntries": []}
            failures.append(
                {
                    "stepKey": event["stepKey"],
                    "message": (event["error"] or {}).get("message"),
                    "description": failure["description"],
                    "meta": metadata(failure["metadataEntries"]),
                }
            )
    return {"checks": checks, "failures": failures}


_CHECK_EXECUTIONS = f"""
query($key: AssetKeyInput!, $name: String!, $limit: Int!) {{ assetCheckExecutions(assetKey: $key, checkName: $name, limit: $limit) {{
  runId status run {{ creationTime }} evaluation {{ success severity description {_META} }}
}} }}
"""


def check_executions(svc: Target, asset_path: Sequence[str], check_name: str, limit: int = 20) -> list[dict]:
    """The check's executions, newest first (what the check's page lists)."""
    executions = _graphql(svc)(
        _CHECK_EXECUTIONS, {"key": {"path": list(asset_path)}, "name": check_name, "limit": limit}
    )["assetCheckExecutions"]
    for execution in executions:
        if execution["evaluation"]:
            execution["evaluation"]["meta"] = metadata(execution["evaluation"].pop("metadataEntries"))
    return executions


_RELOAD = """
mutation($name: String!) { reloadRepositoryLocation(repositoryLocationName: $name) {
  __typename ... on WorkspaceLocationEntry { loadStatus locationOrLoadError { __typename ... on PythonError { message } } }
  ... on Error { message }
} }
"""


def reload_location(svc: Target, location: str) -> None:
    """The UI's "Reload" of a code location (after its code or config changed)."""
    entry = _expect(
        _graphql(svc)(_RELOAD, {"name": location})["reloadRepositoryLocation"],
        "WorkspaceLocationEntry",
        "reloadRepositoryLocation",
    )
    loaded = entry["locationOrLoadError"] or {}
    if loaded.get("__typename") == "PythonError":
        raise DagsterServiceError(f"code location {location} failed to reload: {loaded['message']}")


_ADD_PARTITION = """
mutation($r: RepositorySelector!, $d: String!, $k: String!) { addDynamicPartition(repositorySelector: $r, partitionsDefName: $d, partitionKey: $k) {
  __typename ... on Error { message } ... on PythonError { message }
} }
"""
_DELETE_PARTITIONS = """
mutation($r: RepositorySelector!, $d: String!, $k: [String!]!) { deleteDynamicPartitions(repositorySelector: $r, partitionsDefName: $d, partitionKeys: $k) {
  __typename ... on PythonError { message } ... on UnauthorizedError { message }
} }
"""


def add_partition(svc: Target, partitions_def: str, key: str, *, location: str | None = None) -> None:
    """The UI's "Add a partition" of a dynamic partitions definition."""
    result = _graphql(svc)(_ADD_PARTITION, {"r": repository_selector(svc, location), "d": partitions_def, "k": key})[
        "addDynamicPartition"
    ]
    _expect(result, "AddDynamicPartitionSuccess", "addDynamicPartition")


def delete_partitions(svc: Target, partitions_def: str, keys: Sequence[str], *, location: str | None = None) -> None:
    result = _graphql(svc)(
        _DELETE_PARTITIONS, {"r": repository_selector(svc, location), "d": partitions_def, "k": list(keys)}
    )["deleteDynamicPartitions"]
    _expect(result, "DeleteDynamicPartitionsSuccess", "deleteDynamicPartitions")


_CONFIG_TYPES = """
query($s: PipelineSelector!) { runConfigSchemaOrError(selector: $s) { __typename
  ... on RunConfigSchema { allConfigTypes { key __typename ... on CompositeConfigType { fields { name description } } } }
  ... on Error { message } ... on PythonError { message }
} }
"""


def config_field_descriptions(svc: Target, job_name: str, *, location: str | None = None) -> dict[str, set[str | None]]:
    """Field name -> the descriptions it carries anywhere in the job's run config schema (the
    launchpad's documentation pane shows them)."""
    selector = {**repository_selector(svc, location), "pipelineName": job_name}
    schema = _expect(
        _graphql(svc)(_CONFIG_TYPES, {"s": selector})["runConfigSchemaOrError"],
        "RunConfigSchema",
        "runConfigSchemaOrError",
    )
    described: dict[str, set[str | None]] = {}
    for config_type in schema["allConfigTypes"]:
        for field in config_type.get("fields") or []:
            described.setdefault(field["name"], set()).add(field["description"])
    return described


_RESOURCES = """
query($r: RepositorySelector!) { allTopLevelResourceDetailsOrError(repositorySelector: $r) { __typename
  ... on ResourceDetailsList { results { name description configFields { name description } configuredValues { key value } } }
  ... on Error { message } ... on PythonError { message }
} }
"""


def resources(svc: Target, *, location: str | None = None) -> dict[str, dict]:
    """The code location's resources as the Resources page shows them."""
    result = _graphql(svc)(_RESOURCES, {"r": repository_selector(svc, location)})["allTopLevelResourceDetailsOrError"]
    return {
        r["name"]: r for r in _expect(result, "ResourceDetailsList", "allTopLevelResourceDetailsOrError")["results"]
    }
