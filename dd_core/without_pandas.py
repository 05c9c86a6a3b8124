"""Keeping pandas out of a process that only makes row groups.

pyarrow imports pandas, when it is installed, on the first ``pa.array`` of a Python list (its
pandas shim checks whether the list is a pandas object): ~0.15-0.3 s of CPU. Generation never
needs pandas (``to_pandas`` is only in the Python API's results), so ``ddsynth generate`` and the
worker processes refuse it, and pyarrow then works without it.
"""

from __future__ import annotations

import importlib.abc
import sys


class _NoPandas(importlib.abc.MetaPathFinder):
    def find_spec(self, name: str, path: object = None, target: object = None) -> None:
        if name == "pandas" or name.startswith("pandas."):
            raise ModuleNotFoundError(f"{name} is not needed to generate row groups", name=name)
        return None


def refuse_pandas() -> None:
    """From now on this process cannot import pandas (unless it already has)."""
    if "pandas" not in sys.modules and not any(isinstance(f, _NoPandas) for f in sys.meta_path):
        sys.meta_path.insert(0, _NoPandas())


def allow_pandas() -> None:
    """Undo ``refuse_pandas`` (a test that ran a command in-process goes on as a library user)."""
    sys.meta_path[:] = [finder for finder in sys.meta_path if not isinstance(finder, _NoPandas)]
