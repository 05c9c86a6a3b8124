"""``DatasetComponent``: a dd dataset declared in a ``defs.yaml``, Dagster's components way.

    type: dd_dagster.DatasetComponent
    attributes:
      config: customers.yaml          # relative to this defs.yaml
      num_records: 10000
      buffer_size: 1000
      artifact_path: /data/datasets   # relative paths start at the project root
      models:
        writer: {base_url: "http://vllm:8000/v1", api_key_env: VLLM_KEY}
      translation:
        owners: [team:synthetic-data]

It builds what ``build_dataset_definitions`` builds (the same assets, checks, job, sensors and
schedule), with its own ``DataDesignerResource`` under ``<name>_data_designer``, so several
components with different artifact paths or endpoints load side by side.
"""

# No `from __future__ import annotations`: Dagster reads the attribute annotations.

from pathlib import Path
from typing import Annotated, Literal

import dagster as dg
from dagster.components.utils.translation import TranslationFn, TranslationFnResolver
from pydantic import Field

from dd_core import load_config
from dd_dagster.factory import build_dataset_definitions
from dd_dagster.resource import DataDesignerResource, ModelEndpoint
from dd_dagster.translator import DatasetAssetProps, DDDatasetTranslator


class ModelEndpointAttributes(dg.Model):
    """Where one model alias of the config is served in this deployment."""

    provider: Literal["openai", "azure", "anthropic"] | None = Field(
        default=None, description="The API the alias is served through (checked against the config's provider)."
    )
    base_url: str | None = Field(
        default=None,
        description="Endpoint: OpenAI-compatible (http://vllm:8000/v1), an Azure OpenAI resource or Anthropic's API.",
    )
    api_key_env: str | None = Field(
        default=None, description="Name of the environment variable holding the API key (never the key itself)."
    )
    api_version: str | None = Field(default=None, description="Azure OpenAI: the REST API version, e.g. 2024-10-21.")
    deployment: str | None = Field(default=None, description="Azure OpenAI: the deployment serving the model.")
    azure_ad_token_env: str | None = Field(
        default=None, description="Azure OpenAI: the environment variable holding a Microsoft Entra ID token."
    )
    max_parallel_requests: int | None = Field(default=None, description="Requests in flight at once for this model.")
    timeout_s: float | None = Field(default=None, description="Seconds before one request is abandoned and retried.")

    def endpoint(self) -> ModelEndpoint:
        return ModelEndpoint(
            provider=self.provider,
            base_url=self.base_url,
            api_key=dg.EnvVar(self.api_key_env) if self.api_key_env else None,
            api_version=self.api_version,
            deployment=self.deployment,
            azure_ad_token=dg.EnvVar(self.azure_ad_token_env) if self.azure_ad_token_env else None,
            max_parallel_requests=self.max_parallel_requests,
            timeout_s=self.timeout_s,
        )


def _about(description: str) -> dg.Resolver:
    """An attribute's description for `dg` and editors (Dagster takes it from the resolver)."""
    return dg.Resolver.default(description=description)


class _Translation(DDDatasetTranslator):
    """The default specs, then the component's ``translation`` (templates see ``dataset`` and ``role``)."""

    def __init__(self, translation: TranslationFn[DatasetAssetProps]):
        self.translation = translation

    def get_asset_spec(self, props: DatasetAssetProps) -> dg.AssetSpec:
        return self.translation(super().get_asset_spec(props), props)


class DatasetComponent(dg.Component, dg.Model, dg.Resolvable):
    """A dd synthetic dataset: its row groups as one dynamic partition each, and the combined
    dataset, with checks, a job, sensors and an optional refresh schedule."""

    # A pydantic model (not a dataclass): attributes are validated after templates resolve,
    # so `num_records: lots` fails `dg check defs` naming the attribute. Ranges are checked by
    # build_dataset_definitions, with the same messages as in Python.
    config: Annotated[str, _about("The dataset config (YAML or JSON), relative to this defs.yaml.")]
    num_records: Annotated[int, _about("Records in the finished dataset.")]
    buffer_size: Annotated[int, _about("Records per row group (one partition each).")] = 1000
    dataset_name: Annotated[
        str | None, _about("Name of the dataset and prefix of its asset keys (default: the config's name).")
    ] = None
    row_groups_per_run: Annotated[int, _about("Row groups per run of a backfill.")] = 10
    refresh_cron: Annotated[
        str | None, _about("Cron schedule requesting stale or missing row groups (none by default).")
    ] = None
    artifact_path: Annotated[
        str, _about("Folder or s3://bucket/prefix for the data; relative paths start at the project root.")
    ] = "artifacts/dagster"
    models: Annotated[
        dict[str, ModelEndpointAttributes], _about("Per model alias of the config: the endpoint to use.")
    ] = {}
    generation_worker: Annotated[
        bool, _about("Generate in worker processes beside the run (off: in the run's own process).")
    ] = True
    workers: Annotated[
        int | None,
        _about(
            "Worker processes generating a run's row groups (default: the cores available, fewer for a small job without LLM columns, as ddsynth generate)."
        ),
    ] = None
    translation: (
        Annotated[
            TranslationFn[DatasetAssetProps],
            TranslationFnResolver[DatasetAssetProps](lambda props: {"dataset": props.dataset.name, "role": props.role}),
        ]
        | None
    ) = None

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        config_path = (context.path / self.config).resolve()
        name = self.dataset_name or load_config(config_path).name or "dataset"
        resource = DataDesignerResource(
            artifact_path=_absolute(self.artifact_path, context.project_root),
            models={alias: m.endpoint() for alias, m in self.models.items()},
            generation_worker=self.generation_worker,
            workers=self.workers,
        )
        return build_dataset_definitions(
            config_path,
            num_records=self.num_records,
            buffer_size=self.buffer_size,
            dataset_name=name,
            row_groups_per_run=self.row_groups_per_run,
            refresh_cron=self.refresh_cron,
            translator=_Translation(self.translation) if self.translation else None,
            resource=resource,
            resource_key=f"{name}_data_designer",
        )


def _absolute(path: str, root: Path) -> str:
    return path if "://" in path or Path(path).is_absolute() else str(root / path)
