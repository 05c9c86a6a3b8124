"""Picking values by index without ``pyarrow.compute``.

``pa.Array.take`` loads ``pyarrow.compute`` on first use, which builds a Python wrapper for
each of its ~300 kernels (~25 ms at start-up); a sampler-only run needs none of them. A numpy
object array indexed by numpy and converted once gives the same Arrow array.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import pyarrow as pa


def values_array(values: Iterable[Any]) -> np.ndarray:
    """Python values as a 1-d object array (kept as they are: no numpy type coercion)."""
    array = np.empty(len(values), dtype=object)
    array[:] = list(values)
    return array


def take(values: np.ndarray, indices: np.ndarray, type: pa.DataType) -> pa.Array:
    """``values[indices]`` as an Arrow array of ``type`` (``values`` from ``values_array``)."""
    return pa.array(values[indices], type)
