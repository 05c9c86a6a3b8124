"""The config fingerprint: a hash of everything that changes the generated data, and nothing else.

(Named apart from the ``fingerprint`` function so ``dd_core.fingerprint`` is always the function.)
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields
from typing import Any

from dd_core.config import DatasetConfig

ALGO = "sha256"
#: Bump when the canonical form or the engine's output for the same config changes.
VERSION = 1


@dataclass(frozen=True, eq=False)
class Fingerprint(Mapping[str, Any]):
    """A config's fingerprint: typed attributes, and a read-only mapping of the same three keys
    (``fp["config_hash"]``, ``dict(fp)``, ``fp == {...}``) for metadata and JSON."""

    config_hash: str
    config_hash_algo: str = ALGO
    config_hash_version: int = VERSION

    def __getitem__(self, key: str) -> Any:
        if key not in self._keys():
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys())

    def __len__(self) -> int:
        return len(self._keys())

    @classmethod
    def _keys(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))


def canonical_json(config: DatasetConfig) -> str:
    """Sorted keys, no whitespace, defaults filled in: the same data gives the same text."""
    return json.dumps(
        config.fingerprint_view(), sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def config_hash(config: DatasetConfig) -> str:
    return f"{ALGO}:{hashlib.sha256(canonical_json(config).encode()).hexdigest()}"


def fingerprint(config: DatasetConfig) -> Fingerprint:
    return Fingerprint(config_hash(config))
