"""Processors that reshape the finished dataset: drop intermediate columns, rename columns."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from dd_core.config.base import ConfigModel
from dd_core.config.columns import COLUMN_NAME


class DropColumnsProcessor(ConfigModel):
    type: Literal["drop_columns"]
    columns: list[str] = Field(min_length=1)

    def apply_to_names(self, names: list[str]) -> list[str]:
        return [n for n in names if n not in self.columns]


class RenameColumnsProcessor(ConfigModel):
    type: Literal["rename_columns"]
    columns: dict[str, str] = Field(min_length=1)

    @field_validator("columns")
    @classmethod
    def _new_names(cls, mapping: dict[str, str]) -> dict[str, str]:
        bad = [new for new in mapping.values() if not COLUMN_NAME.match(new)]
        if bad:
            raise ValueError(f"new name(s) {bad} are not valid column names")
        return mapping

    def apply_to_names(self, names: list[str]) -> list[str]:
        return [self.columns.get(n, n) for n in names]
