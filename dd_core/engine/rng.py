"""Random streams of a row group: one independent stream per (seed, row group, column, purpose).

Seeding per column means adding or editing one column never changes another, and drawing
each field from its own stream makes a row group of n rows a prefix of the same row group
with more rows (what extending a partial last row group relies on).
"""

from __future__ import annotations

import hashlib

import numpy as np


def _words(text: str) -> list[int]:
    digest = hashlib.sha256(text.encode()).digest()
    return [int.from_bytes(digest[i : i + 4], "little") for i in range(0, 16, 4)]


def stream(seed: int, row_group: int, column: str, purpose: str = "") -> np.random.Generator:
    key = f"{column}\x00{purpose}"
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, row_group, *_words(key)])))


def dataset_stream(seed: int, column: str, purpose: str) -> np.random.Generator:
    """A stream that does not depend on the row group (e.g. a seed file's permutation)."""
    key = f"{column}\x00{purpose}"
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, *_words(key)])))
