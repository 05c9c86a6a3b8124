"""A value that validates against a JSON schema, drawn from a seeded RNG: the structured replies of
the test server (``$ref``, ``allOf``, ``anyOf``/``oneOf``, ``enum``/``const``, string formats,
bounds, ``uniqueItems``: enough for what pydantic emits)."""

from __future__ import annotations

import json
import math
import random
import uuid
from collections.abc import Mapping
from typing import Any

#: Words that fake strings and plain replies are made of.
WORDS = (
    "amber", "basil", "cedar", "delta", "ember", "fjord", "garnet", "harbor",
    "indigo", "juniper", "kestrel", "lumen", "maple", "nectar", "orchid", "pebble",
)  # fmt: skip
_MAX_DEPTH = 6  # past this, objects keep only required properties and arrays minItems items


def _words(rng: random.Random) -> str:
    return f"{' '.join(rng.choices(WORDS, k=2))} {rng.getrandbits(24):06x}"


_STRING_FORMATS = {
    "date": lambda rng: f"2024-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
    "date-time": lambda rng: (
        f"2024-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:00Z"
    ),
    "email": lambda rng: f"user{rng.getrandbits(16):04x}@example.com",
    "uri": lambda rng: f"https://example.com/{rng.getrandbits(32):08x}",
    "uuid": lambda rng: str(uuid.UUID(int=rng.getrandbits(128), version=4)),
}


class SchemaError(ValueError):
    """The requested JSON schema uses something the generator cannot satisfy."""


class SchemaFaker:
    """Builds a value that validates against a JSON schema, drawing choices from an RNG."""

    def __init__(self, root: Mapping[str, Any], rng: random.Random):
        self._root = root
        self._rng = rng
        self._generators = {
            "object": self._object,
            "array": self._array,
            "string": self._string,
            "integer": self._integer,
            "number": self._number,
            "boolean": lambda schema, depth: rng.random() < 0.5,
            "null": lambda schema, depth: None,
        }

    def value(self, schema: Any, depth: int = 0) -> Any:
        schema = self._flatten(schema)
        if "const" in schema:
            return schema["const"]
        if "enum" in schema:
            return self._rng.choice(schema["enum"])
        for combinator in ("anyOf", "oneOf"):
            if combinator in schema:
                return self.value(schema[combinator][0], depth)
        kind = _schema_type(schema)
        if kind not in self._generators:
            raise SchemaError(f"unsupported type {kind!r}")
        return self._generators[kind](schema, depth)

    def _flatten(self, schema: Any) -> dict[str, Any]:
        """Resolve ``$ref`` and shallow-merge ``allOf`` (enough for what pydantic emits)."""
        if schema is True:
            return {}
        if not isinstance(schema, dict):
            raise SchemaError(f"not a schema: {schema!r}")
        if "$ref" in schema:
            siblings = {k: v for k, v in schema.items() if k != "$ref"}
            return self._flatten({**self._resolve(schema["$ref"]), **siblings})
        if "allOf" in schema:
            merged: dict[str, Any] = {}
            for part in schema["allOf"]:
                merged.update(self._flatten(part))
            merged.update((k, v) for k, v in schema.items() if k != "allOf")
            return merged
        return schema

    def _resolve(self, ref: str) -> Any:
        if not ref.startswith("#"):
            raise SchemaError(f"only local $ref is supported, got {ref!r}")
        node: Any = self._root
        try:
            for token in ref[1:].split("/")[1:]:
                node = node[token.replace("~1", "/").replace("~0", "~")]
        except (KeyError, TypeError):
            raise SchemaError(f"unresolvable $ref {ref!r}") from None
        return node

    def _object(self, schema: dict[str, Any], depth: int) -> dict[str, Any]:
        properties = schema.get("properties", {})
        required = schema.get("required", [])
        names = [name for name in properties if depth < _MAX_DEPTH or name in required]
        names += [name for name in required if name not in properties]
        extra = schema.get("additionalProperties")
        fallback = extra if isinstance(extra, dict) else {}
        return {name: self.value(properties.get(name, fallback), depth + 1) for name in names}

    def _array(self, schema: dict[str, Any], depth: int) -> list[Any]:
        low, high = _complete_range(schema.get("minItems", 0), schema.get("maxItems"), 3)
        high = low if depth >= _MAX_DEPTH else high
        preferred_low = max(low, min(1, high))
        count = self._rng.randint(preferred_low, min(high, preferred_low + 2))
        unique = schema.get("uniqueItems", False)
        items: list[Any] = []
        seen: set[str] = set()
        for _ in range(10 * count):
            if len(items) == count:
                break
            item = self.value(schema.get("items", {}), depth + 1)
            marker = json.dumps(item, sort_keys=True)
            if not (unique and marker in seen):
                seen.add(marker)
                items.append(item)
        return items

    def _string(self, schema: dict[str, Any], depth: int) -> str:
        text = _STRING_FORMATS.get(schema.get("format", ""), _words)(self._rng)
        text = text.ljust(schema.get("minLength", 0), "x")
        return text[: schema.get("maxLength", len(text))]

    def _integer(self, schema: dict[str, Any], depth: int) -> int:
        lows = [math.ceil(schema["minimum"])] if "minimum" in schema else []
        if "exclusiveMinimum" in schema:
            lows.append(math.floor(schema["exclusiveMinimum"]) + 1)
        highs = [math.floor(schema["maximum"])] if "maximum" in schema else []
        if "exclusiveMaximum" in schema:
            highs.append(math.ceil(schema["exclusiveMaximum"]) - 1)
        low, high = _complete_range(max(lows, default=None), min(highs, default=None), 100)
        return self._rng.randint(low, high)

    def _number(self, schema: dict[str, Any], depth: int) -> float:
        """A number strictly inside the bounds, so exclusive bounds hold too."""
        lows = [schema[k] for k in ("minimum", "exclusiveMinimum") if k in schema]
        highs = [schema[k] for k in ("maximum", "exclusiveMaximum") if k in schema]
        low, high = _complete_range(max(lows, default=None), min(highs, default=None), 100.0)
        number = round(low + (high - low) * (0.1 + 0.8 * self._rng.random()), 3)
        return number if low < number < high else (low + high) / 2


def _schema_type(schema: Mapping[str, Any]) -> str:
    """The type to generate: the first non-null declared type, else inferred from keywords."""
    declared = schema.get("type")
    if isinstance(declared, list):
        concrete = [kind for kind in declared if kind != "null"]
        return concrete[0] if concrete else "null"
    if declared:
        return declared
    if {"properties", "required", "additionalProperties"} & schema.keys():
        return "object"
    return "array" if "items" in schema else "string"


def _complete_range(low: Any, high: Any, width: Any) -> tuple[Any, Any]:
    """Fill in missing bounds: [0, width] when both are absent, else width around the known one."""
    if low is None and high is None:
        low = 0
    if low is None:
        low = high - width
    if high is None:
        high = low + width
    if low > high:
        raise SchemaError(f"empty range [{low}, {high}]")
    return low, high
