"""Shared base of every config model: strict fields and a fingerprint view."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict


class ConfigModel(BaseModel):
    """A frozen, strict pydantic model.

    ``fingerprint_exclude`` names fields that never change the generated data (comments,
    endpoints, concurrency, secrets); the fingerprint leaves them out.
    """

    # allow_inf_nan=False: NaN and infinity are never meaningful parameters (weights, bounds, timeouts).
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
    fingerprint_exclude: ClassVar[frozenset[str]] = frozenset({"description"})

    def fingerprint_view(self) -> dict[str, Any]:
        """The output-affecting content of this model, as plain JSON-able data."""
        return {
            name: _view(getattr(self, name)) for name in type(self).model_fields if name not in self.fingerprint_exclude
        }


class FieldProblem(ValueError):
    """A model-level validation failure that still names the field to fix."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


def _view(value: Any) -> Any:
    if isinstance(value, ConfigModel):
        return value.fingerprint_view()
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, dict):
        return {str(k): _view(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_view(v) for v in value]
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value
