"""Shared set-up for the reference (data-designer 0.9.7) workload scripts.

Call ``prepare_environment()`` BEFORE importing ``data_designer``: some of its
settings are read from the environment at import time.
"""

from __future__ import annotations

import logging
import os
import random
import sys
import warnings

VERSION = "0.9.7"


def prepare_environment(seed: int | None) -> None:
    env = os.environ
    # Usage telemetry: POSTed to NVIDIA after LLM batches unless disabled (read at import).
    env["NEMO_TELEMETRY_ENABLED"] = "false"
    # Plugin discovery via entry points only; no catalog fetch, but keep it off.
    env.setdefault("DISABLE_DATA_DESIGNER_PLUGINS", "true")
    # Its home (default ~/.data-designer) gets default model/provider YAMLs written
    # on first use: keep that inside the reference venv, not in the user's home.
    env.setdefault("DATA_DESIGNER_HOME", os.path.join(sys.prefix, "data-designer-home"))
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    warnings.filterwarnings("ignore")
    if seed is not None:
        # data-designer has no seed option: its samplers draw from numpy's global
        # RandomState, Faker's shared generator and Python's `random`.  Output is
        # then reproducible only with PYTHONHASHSEED fixed (reference_env does)
        # and ONE row group (buffer >= N): concurrent row groups interleave their
        # draws.  UUIDs (uuid4) are never reproducible.
        import faker
        import numpy as np

        random.seed(seed)
        np.random.seed(seed)
        faker.Faker.seed(seed)


def block_tokenizer_download() -> None:
    """Stop the closing profiler from fetching tiktoken's cl100k_base over the network.

    create() ends with a dataset profile whose LLM-column token statistics load
    ``tiktoken.get_encoding("cl100k_base")``, which downloads the encoding from
    a public blob store unless it is already in tiktoken's cache.  Offline that
    download fails (or, with a black-holing resolver, hangs); here it fails at
    once instead, which the profiler logs as a warning and skips -- the same
    outcome as an offline run, without the wait.  Generation is unaffected.
    """
    from data_designer.engine.utils import token_counting

    def _offline() -> None:
        raise RuntimeError("cl100k_base not loaded: benchmark runs offline")

    token_counting.get_cl100k_base_tokenizer = _offline


def quiet_logging() -> None:
    """Send only warnings and worse to stderr (its INFO progress lines are many)."""
    from data_designer.logging import LoggerConfig, LoggingConfig, OutputConfig, configure_logging

    configure_logging(
        LoggingConfig(
            logger_configs=[LoggerConfig(name="data_designer", level="WARNING")],
            output_configs=[OutputConfig(destination=sys.stderr, structured=False)],
            root_level="WARNING",
        )
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)


def import_data_designer(seed: int | None):
    """Prepare the environment, import data-designer and silence it; returns (config module,
    DataDesigner class, seconds spent importing) so workloads report import time apart."""
    import time

    started = time.perf_counter()
    prepare_environment(seed)
    import data_designer.config as dd
    from data_designer.interface import DataDesigner

    import_s = time.perf_counter() - started
    quiet_logging()
    block_tokenizer_download()
    return dd, DataDesigner, import_s
