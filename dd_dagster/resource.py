"""``DataDesignerResource``: where datasets are written, how models are reached, and how a
run's row groups are produced (in how many worker processes).

API keys come in through ``dagster.EnvVar`` so run config and the UI only ever show the
variable's name; the key is used in request headers and nowhere else.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager

import dagster as dg
from pydantic import Field

from dd_core.orchestration import (
    LLMRuntime,
    ModelOverride,
    ProducedRowGroup,
    RowGroupJob,
    Spend,
    StoragePath,
    reach_models,
)
from dd_dagster.dataset import DagsterDataset
from dd_dagster.production import produce


class ModelEndpoint(dg.Config):
    """Where one model alias of the dataset configs is served in this deployment. Fields left
    empty keep the config's value; none of them changes the config fingerprint."""

    provider: str | None = Field(
        default=None,
        description=(
            "The API the alias is served through (openai, azure or anthropic); checked against the config's "
            "provider, which is part of the fingerprint, so only the config chooses it."
        ),
    )
    base_url: str | None = Field(
        default=None,
        description=(
            "Endpoint (replaces the config's base_url): an OpenAI-compatible URL such as http://vllm:8000/v1, an "
            "Azure OpenAI resource endpoint https://NAME.openai.azure.com, or Anthropic's https://api.anthropic.com."
        ),
    )
    api_key: str | None = Field(
        default=None,
        description='API key; pass it as an environment variable (EnvVar("VLLM_KEY")), so the UI shows only its name.',
    )
    api_version: str | None = Field(
        default=None, description="Azure OpenAI: the REST API version of this deployment, e.g. 2024-10-21."
    )
    deployment: str | None = Field(
        default=None, description="Azure OpenAI: the deployment serving the model here (default: the config's)."
    )
    azure_ad_token: str | None = Field(
        default=None,
        description='Azure OpenAI: a Microsoft Entra ID token instead of a key, as an EnvVar("AZURE_OPENAI_AD_TOKEN").',
    )
    max_parallel_requests: int | None = Field(
        default=None, description="Requests in flight at once for this model, over all its columns."
    )
    timeout_s: float | None = Field(default=None, description="Seconds before one request is abandoned and retried.")


class DataDesignerResource(dg.ConfigurableResource):
    """Where the dd datasets of a code location write their files, and where each model alias
    of their configs is served in this deployment (endpoint, key, limits)."""

    artifact_path: str = Field(
        default="artifacts/dagster",
        description="Folder, or bucket URL (s3://bucket/prefix, gs://bucket/prefix, az://container/prefix), in which each dataset gets a folder of its name (one subfolder per config fingerprint).",
    )
    models: dict[str, ModelEndpoint] = Field(
        default={},
        description="Per model alias of the configs: the endpoint, key and limits to use in this deployment.",
    )
    generation_worker: bool = Field(
        default=True,
        description=(
            "Generate row groups in worker processes beside the run (runs of 2 or more row groups), so Dagster's bookkeeping "
            "and generation use different cores. Off: in the run's own process (one pipeline; workers is then not used)."
        ),
    )
    workers: int | None = Field(
        default=None,
        ge=1,
        description=(
            "Worker processes generating a run's row groups, as ddsynth generate --workers (default: as ddsynth generate chooses, the cores available, fewer for a small job without LLM columns). "
            "Each model's max_parallel_requests is split between them, so the total in flight never exceeds it."
        ),
    )

    def llm_runtime(self, cache_dir: StoragePath) -> LLMRuntime:
        overrides = {
            alias: ModelOverride(
                base_url=e.base_url,
                api_key=e.api_key,
                max_parallel_requests=e.max_parallel_requests,
                timeout_s=e.timeout_s,
                provider=e.provider,
                api_version=e.api_version,
                deployment=e.deployment,
                azure_ad_token=e.azure_ad_token,
            )
            for alias, e in self.models.items()
        }
        return LLMRuntime(cache_dir=cache_dir, overrides=overrides)

    def reach_models(self, dataset: DagsterDataset) -> dict[str, Spend]:
        """Every model the dataset's LLM columns call answers dd's probe at this deployment's
        endpoints; ``ModelEndpointError`` names each one that does not (nothing is written), and
        ``DDConfigError`` a server that refuses a model's ``structured_output``. Returns what
        that check's requests were billed for, per model alias."""
        return reach_models(dataset.config, self.llm_runtime(dataset.llm_cache_dir(self.artifact_path)))

    def produce(
        self, dataset: DagsterDataset, jobs: list[RowGroupJob]
    ) -> AbstractContextManager[Iterator[ProducedRowGroup]]:
        """What a run's row groups come from: ``jobs`` produced as this resource says (the one
        place a run turns jobs into files; ``bench/dagster_overhead.py`` replaces it)."""
        runtime = self.llm_runtime(dataset.llm_cache_dir(self.artifact_path))
        return produce(dataset, jobs, runtime, beside_run=self.generation_worker, workers=self.workers)
