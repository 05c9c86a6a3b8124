"""Dataset config models, loading and validation."""

from dd_core.config.dataset import DEFAULT_SEED, DatasetConfig
from dd_core.config.loader import ConfigSource, load_config

__all__ = ["DEFAULT_SEED", "ConfigSource", "DatasetConfig", "load_config"]
