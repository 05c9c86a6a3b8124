"""``DataDesignerResource``: where datasets are written and how models are reached.

API keys come in through ``dagster.EnvVar`` so run config and the UI only ever show the
variable's name; the key is used in request headers and nowhere else.
"""

from __future__ import annotations

from typing import Optional

import dagster as dg

from dd_core import LLMRuntime, ModelOverride


class ModelEndpoint(dg.Config):
    """Replaces what a config's model alias points at, for runs in this deployment."""

    base_url: Optional[str] = None
    api_key: Optional[str] = None
    max_parallel_requests: Optional[int] = None
    timeout_s: Optional[float] = None


class DataDesignerResource(dg.ConfigurableResource):
    """Shared by every dd dataset of a code location.

    Example::

        DataDesignerResource(
            artifact_path="s3://bucket/datasets",  # or a local folder
            models={"writer": ModelEndpoint(base_url="http://vllm:8000/v1", api_key=dg.EnvVar("VLLM_KEY"))},
        )
    """

    artifact_path: str = "artifacts/dagster"
    models: dict[str, ModelEndpoint] = {}
    #: Generate row groups in a worker process beside the run, so Dagster's bookkeeping and
    #: generation use two cores (runs of 4 or more row groups).
    generation_worker: bool = True

    def llm_runtime(self, cache_dir) -> LLMRuntime:
        overrides = {
            alias: ModelOverride(e.base_url, e.api_key, e.max_parallel_requests, e.timeout_s)
            for alias, e in self.models.items()
        }
        return LLMRuntime(cache_dir=cache_dir, overrides=overrides)
