from __future__ import annotations

import dagster as dg
import pytest

from dd_core.storage.faults import reset_fault_hits
from dd_dagster import DagsterDataset, register_partitions
from tests.dagster.helpers import tiny_config


@pytest.fixture
def instance():
    with dg.instance_for_test() as inst:
        yield inst


@pytest.fixture
def tiny_registered(instance):
    """The tiny dataset's 4 row groups registered as partitions."""
    register_partitions(instance, DagsterDataset.create(tiny_config(), 200, 50))
    return instance


@pytest.fixture(autouse=True)
def _fresh_fault_counters():
    reset_fault_hits()
    yield
    reset_fault_hits()
