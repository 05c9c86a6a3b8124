from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import EXAMPLES


@pytest.fixture
def customers_yaml() -> Path:
    return EXAMPLES / "customers.yaml"
