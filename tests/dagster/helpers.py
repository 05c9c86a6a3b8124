"""Shared by the Dagster tests: tiny configs and ways to run row-group ranges in process."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg

from dd_dagster import DataDesignerResource, build_dataset_definitions
from dd_dagster.dagster_internals import range_tags as dagster_range_tags

QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def tiny_config(high: int = 100) -> dict:
    """A fast config; changing ``high`` changes the fingerprint (a new version of the dataset)."""
    return {
        "name": "tiny",
        "columns": [
            {"name": "kind", "type": "category", "values": ["a", "b", "c"]},
            {"name": "value", "type": "uniform", "low": 0, "high": high, "dtype": "int"},
            {"name": "label", "type": "expression", "expr": "{{ kind }}-{{ value }}"},
        ],
    }


def tiny_defs(
    artifact_path, high: int = 100, num_records: int = 200, buffer_size: int = 50, **kwargs
) -> dg.Definitions:
    resource = DataDesignerResource(artifact_path=str(artifact_path))
    return build_dataset_definitions(
        tiny_config(high), num_records=num_records, buffer_size=buffer_size, resource=resource, **kwargs
    )


def parts_config(
    folder: Path, base_url: str, num_records: int, buffer_size: int, parallel: int = 6, price: dict | None = None
) -> Path:
    """An LLM config (two chained columns) whose every prompt names its row group ("(part
        p3)", from an ordered seed file), so a server fault can target one row group and the
        server's request log says which row group each request served. ``price``: the model's
    prices (USD per million tokens). Returns the config file."""
    folder.mkdir(parents=True, exist_ok=True)
    seed = folder / "parts.csv"
    seed.write_text("part\n" + "".join(f"p{row // buffer_size}\n" for row in range(num_records)))
    config = {
        "name": "parts",
        "models": [
            {
                "alias": "writer",
                "model": "test-model",
                "base_url": base_url,
                "max_parallel_requests": parallel,
                "max_retries": 0,
                **({"price": price} if price else {}),
            }
        ],
        "columns": [
            {"name": "parts", "type": "seed_dataset", "path": str(seed)},
            {"name": "question", "type": "llm_text", "model": "writer", "prompt": "Ask a question (part {{ part }})."},
            {"name": "answer", "type": "llm_text", "model": "writer", "prompt": "Answer it: {{ question }}"},
        ],
    }
    path = folder / "parts.json"
    path.write_text(json.dumps(config))
    return path


def range_tags(start: int, end: int) -> dict[str, str]:
    return dagster_range_tags(f"{start:05d}", f"{end:05d}")


def run_range(
    defs: dg.Definitions,
    instance,
    start: int,
    end: int,
    mode: str = "if_possible",
    name: str = "tiny",
    raise_on_error: bool = True,
):
    job = defs.resolve_job_def(f"{name}_row_groups_job")
    tags = range_tags(start, end)
    run_config = {**QUIET, "ops": {f"{name}_row_groups": {"config": {"resume": mode}}}}
    return job.execute_in_process(instance=instance, tags=tags, run_config=run_config, raise_on_error=raise_on_error)


def outcome(result) -> dict[int, str]:
    """Row group -> "generated" or "reused", from the run's materializations."""
    return {
        int(e.partition): "reused" if e.materialization.metadata["reused"].value else "generated"
        for e in result.get_asset_materialization_events()
    }


def materialize_dataset(defs: dg.Definitions, instance, name: str = "tiny"):
    return dg.materialize(
        [defs.resolve_assets_def(dg.AssetKey([name]))], instance=instance, run_config=QUIET, raise_on_error=False
    )
