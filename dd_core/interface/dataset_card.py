"""The Hugging Face dataset card (README.md) of a pushed dataset: YAML front matter the Hub and
``datasets`` read (``configs``/``data_files``, ``dataset_info.features`` from the arrow schema,
the size category, the license when given) and a body a person reads: the config, its
fingerprint, generation statistics and what the LLM calls cost."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import yaml

DATA_GLOB = "data/train-*.parquet"
_SIZES = [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
          (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M"), (1_000_000_000, "100M<n<1B")]  # fmt: skip


@dataclass(frozen=True)
class CardFacts:
    """What the card says about a dataset."""

    name: str
    #: The resolved config, as dd stores it in a dataset folder (JSON data).
    config: dict[str, Any]
    config_hash: str
    num_rows: int
    row_groups: int
    dropped_rows: int = 0
    llm_usage: dict[str, Any] = field(default_factory=dict)
    llm_cost_usd: float | None = None
    license: str | None = None


def size_category(rows: int) -> str:
    return next((name for limit, name in _SIZES if rows < limit), "n>1T" if rows >= 10**12 else "1B<n<10B")


def feature(arrow_type: pa.DataType) -> Any:
    """The ``datasets`` feature of an arrow type, as the card's YAML writes it."""
    if pa.types.is_struct(arrow_type):
        return {"struct": [{"name": f.name, **_typed(f.type)} for f in arrow_type]}
    if pa.types.is_list(arrow_type) or pa.types.is_large_list(arrow_type):
        return {"list": feature(arrow_type.value_type)}
    if pa.types.is_dictionary(arrow_type):
        return feature(arrow_type.value_type)
    if pa.types.is_large_string(arrow_type):
        return "large_string"
    if pa.types.is_timestamp(arrow_type):
        return f"timestamp[{arrow_type.unit}{', tz=' + arrow_type.tz if arrow_type.tz else ''}]"
    names = {"double": "float64", "float": "float32", "halffloat": "float16"}
    return names.get(str(arrow_type), str(arrow_type))


def _typed(arrow_type: pa.DataType) -> dict[str, Any]:
    value = feature(arrow_type)
    return value if isinstance(value, dict) else {"dtype": value}


def dataset_card(schema: pa.Schema, facts: CardFacts, num_bytes: int) -> str:
    front = {
        **({"license": facts.license} if facts.license else {}),
        "size_categories": [size_category(facts.num_rows)],
        "tags": ["synthetic", "ddsynth"],
        "configs": [{"config_name": "default", "data_files": [{"split": "train", "path": DATA_GLOB}]}],
        "dataset_info": {
            "features": [{"name": f.name, **_typed(f.type)} for f in schema],
            "splits": [{"name": "train", "num_bytes": num_bytes, "num_examples": facts.num_rows}],
            "download_size": num_bytes,
            "dataset_size": num_bytes,
        },
    }
    cost = f"${facts.llm_cost_usd:,.4f}" if facts.llm_cost_usd is not None else "not priced (no model prices given)"
    usage = "\n".join(
        f"| {alias} | {u.get('calls', 0):,} | {u.get('prompt_tokens', 0):,} | {u.get('completion_tokens', 0):,} |"
        for alias, u in sorted(facts.llm_usage.items())
        if isinstance(u, dict)
    )
    usage_table = (
        f"| model | paid calls | prompt tokens | completion tokens |\n|---|---|---|---|\n{usage}\n\n" if usage else ""
    )
    body = (
        f"# {facts.name}\n\n"
        f"Synthetic data generated with [ddsynth](https://pypi.org/project/ddsynth/): {facts.num_rows:,} rows in "
        f"{facts.row_groups:,} row group(s).\n\n"
        "## Generation\n\n"
        f"- config fingerprint: `{facts.config_hash}`\n"
        f"- rows: {facts.num_rows:,} ({facts.dropped_rows:,} dropped for failed LLM cells)\n"
        f"- row groups: {facts.row_groups:,}\n"
        f"- LLM cost: {cost}\n\n"
        f"{usage_table}"
        "## Config\n\n"
        "The config that produced the data (load it with `ddsynth generate` to make it again):\n\n"
        f"```json\n{json.dumps(facts.config, indent=2, ensure_ascii=False)}\n```\n"
    )
    return f"---\n{yaml.safe_dump(front, sort_keys=False, allow_unicode=True)}---\n\n{body}"
