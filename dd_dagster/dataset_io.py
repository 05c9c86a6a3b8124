"""The combined dataset as the value of a downstream asset's parameter, in the form its type
annotation asks for:

    @dg.asset
    def train(customers_dataset: pd.DataFrame): ...      # or pa.Table, pl.LazyFrame, str, Path

``pandas.DataFrame`` and ``pyarrow.Table`` are read (in ranges, from any backend),
``polars.LazyFrame`` is a lazy scan (polars reads what the query needs), ``str`` is the file's
path or URL, ``pathlib.Path`` its local path (local datasets only). Unannotated: the path.
The file is the one the combined asset's latest materialization recorded.
"""

from __future__ import annotations

import pathlib
import typing
from collections.abc import Callable
from typing import Any

import dagster as dg

from dd_core.orchestration import read_arrow, read_pandas, scan_polars, storage_path

#: The resource key the combined dataset assets are given their I/O manager under.
DATASET_IO_MANAGER_KEY = "dd_dataset_io_manager"


def _local_path(path: str) -> pathlib.Path:
    location = storage_path(path)
    if not location.is_local:
        raise dg.Failure(
            f"the dataset is at {path}, not on the local disk: annotate the parameter as str for its URL, or as "
            "pd.DataFrame, pa.Table or pl.LazyFrame for its data"
        )
    return location.local


#: (module root, class name) of an annotation -> how the dataset file becomes that value.
_LOADERS: dict[tuple[str, str], Callable[[str], Any]] = {
    ("pandas", "DataFrame"): read_pandas,
    ("pyarrow", "Table"): read_arrow,
    ("polars", "LazyFrame"): scan_polars,
    ("polars", "DataFrame"): lambda path: scan_polars(path).collect(),
    ("builtins", "str"): str,
    ("pathlib", "Path"): _local_path,
}


def loader_for(annotation: Any) -> Callable[[str], Any]:
    """How to load the dataset for a parameter annotated ``annotation`` (by module and name, so
    neither pandas nor polars is imported to compare)."""
    if annotation is typing.Any or annotation is None or annotation is dg.Nothing:
        return str
    key = (getattr(annotation, "__module__", "").split(".")[0], getattr(annotation, "__name__", ""))
    if key not in _LOADERS:
        kinds = "pd.DataFrame, pa.Table, pl.LazyFrame, pl.DataFrame, str or pathlib.Path"
        raise dg.Failure(f"a dd dataset can be loaded as {kinds}, not as {annotation!r}")
    return _LOADERS[key]


class DatasetIOManager(dg.ConfigurableIOManager):
    """Hands the combined dd dataset to downstream assets; the combined asset writes its file
    itself, so storing an output is a no-op."""

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        return None

    def load_input(self, context: dg.InputContext) -> Any:
        key = context.upstream_output.asset_key
        event = context.instance.get_latest_materialization_event(key)
        materialization = event.asset_materialization if event else None
        if materialization is None or "path" not in materialization.metadata:
            raise dg.Failure(f"{key.to_user_string()} has not been materialized yet: materialize it first")
        path = str(materialization.metadata["path"].value)
        typing_type = context.dagster_type.typing_type if context.dagster_type else typing.Any
        return loader_for(typing_type)(path)


dataset_io_manager = DatasetIOManager()
