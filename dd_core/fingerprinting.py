"""The config fingerprint: a hash of everything that changes the generated data, and nothing else.

(Named apart from the ``fingerprint`` function so ``dd_core.fingerprint`` is always the function.)
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from dd_core.config import DatasetConfig

ALGO = "sha256"
#: Bump when the canonical form or the engine's output for the same config changes.
VERSION = 1


def canonical_json(config: DatasetConfig) -> str:
    """Sorted keys, no whitespace, defaults filled in: the same data gives the same text."""
    return json.dumps(config.fingerprint_view(), sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def config_hash(config: DatasetConfig) -> str:
    return f"{ALGO}:{hashlib.sha256(canonical_json(config).encode()).hexdigest()}"


def fingerprint(config: DatasetConfig) -> dict[str, Any]:
    return {"config_hash": config_hash(config), "config_hash_algo": ALGO, "config_hash_version": VERSION}
