"""Vectorised fictitious persons from Faker's locale data.

Calling Faker once per field per row costs 40-170 us here (its weighted choice recomputes a
cumulative sum on every call). Instead, Faker's own name lists (with their weights) are
sampled with numpy from the row group's seeded streams; fields Faker only builds from
formats (city, state) come from a fixed pool Faker generates once per locale with a fixed
seed. Same locale data, same seed -> same persons, at numpy speed.

Building a locale's vocabulary (importing Faker, 4,000 formatted cities and states) takes
~0.2 s, which a 10-row run should not pay each time: it is kept in the user's cache folder
(``$DD_CACHE_DIR``, else ``$XDG_CACHE_HOME/dd`` or ``~/.cache/dd``), keyed by the installed
Faker's files, and rebuilt when those change or the file cannot be read.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from dd_core.config.columns import PersonColumn
from dd_core.engine.arrays import take, values_array
from dd_core.engine.context import RowGroupContext

if TYPE_CHECKING:
    from faker import Faker

POOL_SIZE = 2000
FIELDS = ["first_name", "last_name", "sex", "age", "email", "city", "state"]


@dataclass(frozen=True)
class Choices:
    values: np.ndarray  # of str (``arrays.values_array``)
    probabilities: np.ndarray | None

    def draw(self, rng: np.random.Generator, size: int) -> np.ndarray:
        return rng.choice(len(self.values), size=size, p=self.probabilities)


@dataclass(frozen=True)
class Vocabulary:
    male: Choices
    female: Choices
    last: Choices
    ascii_male: list[str]
    ascii_female: list[str]
    ascii_last: list[str]
    email_domains: np.ndarray
    cities: np.ndarray | None
    states: np.ndarray | None


def _ascii(text: str) -> str:
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return "".join(ch for ch in folded.lower() if ch.isalnum())


def _provider_attr(fake: Faker, *names: str) -> Any:
    for provider in fake.factories[0].get_providers():
        for name in names:
            if hasattr(provider, name):
                return getattr(provider, name)
    return None


def _pool(fake: Faker, method: str) -> list[str] | None:
    if not hasattr(fake, method):
        return None
    fake.seed_instance(0)
    return [getattr(fake, method)() for _ in range(POOL_SIZE)]


@lru_cache(maxsize=16)
def vocabulary(locale: str) -> Vocabulary:
    path = _cache_file(locale)
    data = _read_cached(path) if path else None
    if data is None:
        data = _build(locale)
        if path:
            _write_cached(path, data)
    return _vocabulary(data)


def _cache_file(locale: str) -> Path | None:
    spec = importlib.util.find_spec("faker")
    if spec is None or not spec.origin:
        return None
    package = Path(spec.origin).parent
    try:
        stamp = "|".join(
            f"{p}:{p.stat().st_mtime_ns}:{p.stat().st_size}"
            for p in (package / "__init__.py", package / "providers" / "person" / locale / "__init__.py")
        )
    except OSError:
        return None
    key = hashlib.sha256(f"{stamp}|{POOL_SIZE}|v1".encode()).hexdigest()[:16]
    root = os.environ.get("DD_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "dd"
    )
    return Path(root) / f"faker-{locale}-{key}.json"


def _read_cached(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return data if isinstance(data, dict) and set(data) == _FIELDS else None
    except (OSError, ValueError):
        return None


def _write_cached(path: Path, data: dict) -> None:
    """Best effort (a read-only home is fine): written whole under its final name or not at all."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink()


_FIELDS = {
    "male",
    "male_weights",
    "female",
    "female_weights",
    "last",
    "last_weights",
    "email_domains",
    "cities",
    "states",
}


def _entries(entries: dict[str, float] | list[str]) -> tuple[list[str], list[float] | None]:
    if isinstance(entries, dict):
        weights = np.array(list(entries.values()), dtype=float)
        return list(entries), (weights / weights.sum()).tolist()
    return list(entries), None


def _build(locale: str) -> dict:
    """The locale's vocabulary from Faker, as plain JSON data."""
    from faker import Faker

    fake = Faker(locale)
    first = _provider_attr(fake, "first_names")
    male, male_weights = _entries(_provider_attr(fake, "first_names_male") or first)
    female, female_weights = _entries(_provider_attr(fake, "first_names_female") or first)
    last, last_weights = _entries(_provider_attr(fake, "last_names", "last_names_male"))
    state_method = "state" if hasattr(fake, "state") else "administrative_unit"
    return {
        "male": male, "male_weights": male_weights,
        "female": female, "female_weights": female_weights,
        "last": last, "last_weights": last_weights,
        "email_domains": list(_provider_attr(fake, "free_email_domains") or ["example.com"]),
        "cities": _pool(fake, "city"),
        "states": _pool(fake, state_method),
    }  # fmt: skip


def _vocabulary(data: dict) -> Vocabulary:
    def choices(name: str) -> Choices:
        weights = data[f"{name}_weights"]
        return Choices(values_array(data[name]), None if weights is None else np.array(weights, dtype=float))

    male, female, last = choices("male"), choices("female"), choices("last")
    return Vocabulary(
        male=male,
        female=female,
        last=last,
        ascii_male=[_ascii(v) or "user" for v in data["male"]],
        ascii_female=[_ascii(v) or "user" for v in data["female"]],
        ascii_last=[_ascii(v) or "person" for v in data["last"]],
        email_domains=values_array(data["email_domains"]),
        cities=None if data["cities"] is None else values_array(data["cities"]),
        states=None if data["states"] is None else values_array(data["states"]),
    )


def generate_person(col: PersonColumn, ctx: RowGroupContext) -> pa.Array:
    vocab = vocabulary(col.locale)
    n = ctx.num_rows

    def rng(purpose: str) -> np.random.Generator:  # one stream per field: prefix-stable rows
        return ctx.rng(col.name, purpose)

    if col.sex is None:
        female = rng("sex").random(n) < 0.5
    else:
        female = np.full(n, col.sex == "Female")
    male_idx = vocab.male.draw(rng("first_male"), n)
    female_idx = vocab.female.draw(rng("first_female"), n)
    last_idx = vocab.last.draw(rng("last"), n)
    first = pa.array(np.where(female, vocab.female.values[female_idx], vocab.male.values[male_idx]), pa.string())
    ages = rng("age").integers(col.age_range[0], col.age_range[1], size=n, endpoint=True)
    email_numbers = rng("email_number").integers(1, 100, size=n)
    domains = vocab.email_domains[rng("email_domain").integers(0, len(vocab.email_domains), size=n)].tolist()
    emails = [
        f"{(vocab.ascii_female[fi] if is_f else vocab.ascii_male[mi])}.{vocab.ascii_last[li]}{num}@{dom}"
        for is_f, fi, mi, li, num, dom in zip(
            female.tolist(), female_idx.tolist(), male_idx.tolist(), last_idx.tolist(), email_numbers.tolist(), domains
        )
    ]
    fields = {
        "first_name": first,
        "last_name": take(vocab.last.values, last_idx, pa.string()),
        "sex": pa.array(np.where(female, "Female", "Male"), pa.string()),
        "age": pa.array(ages, pa.int64()),
        "email": pa.array(emails, pa.string()),
        "city": _from_pool(vocab.cities, rng("city"), n),
        "state": _from_pool(vocab.states, rng("state"), n),
    }
    return pa.StructArray.from_arrays([fields[f] for f in FIELDS], names=FIELDS)


def _from_pool(pool: np.ndarray | None, rng: np.random.Generator, n: int) -> pa.Array:
    if pool is None:
        return pa.nulls(n, pa.string())
    return take(pool, rng.integers(0, len(pool), size=n), pa.string())
