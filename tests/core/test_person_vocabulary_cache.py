"""The Faker vocabulary kept in the user's cache folder gives the same persons as Faker itself."""

from __future__ import annotations

import pytest

from dd_core import generate_row_group
from dd_core.engine import person

CONFIG = {"name": "p", "columns": [{"name": "person", "type": "person", "locale": "en_US"}]}


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("DD_CACHE_DIR", str(tmp_path / "cache"))
    person.vocabulary.cache_clear()
    yield tmp_path / "cache"
    person.vocabulary.cache_clear()


def fresh_rows():
    person.vocabulary.cache_clear()
    return generate_row_group(CONFIG, 3, 500).to_pylist()


def test_cached_vocabulary_gives_the_same_persons_as_faker(cache_dir):
    built = fresh_rows()  # builds from Faker, then writes the cache
    files = list(cache_dir.glob("faker-en_US-*.json"))
    assert len(files) == 1
    assert fresh_rows() == built  # read back from the file


def test_a_damaged_or_unwritable_cache_is_rebuilt_or_skipped(cache_dir, monkeypatch):
    built = fresh_rows()
    (file,) = cache_dir.glob("faker-en_US-*.json")
    file.write_text('{"male": [')  # cut short
    assert fresh_rows() == built
    assert file.read_text().startswith('{"male"') and len(file.read_text()) > 1000  # rewritten whole
    blocker = cache_dir / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("DD_CACHE_DIR", str(blocker / "cache"))  # cannot be created, even by root
    assert fresh_rows() == built
