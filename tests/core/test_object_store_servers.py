"""The object-store servers the suite starts (SeaweedFS, Azurite, fake-gcs-server and its shim)
listen on 127.0.0.1 only and send no telemetry."""

from __future__ import annotations

import psutil
import pytest


def listening_addresses(server) -> set[str]:
    """The addresses every process of ``server`` (and its children) listens on."""
    addresses = set()
    for pid in server.pids():
        root = psutil.Process(pid)
        for process in [root, *root.children(recursive=True)]:
            for connection in process.net_connections(kind="inet"):
                if connection.status == psutil.CONN_LISTEN:
                    addresses.add(connection.laddr.ip)
    return addresses


@pytest.mark.parametrize("kind", ["seaweedfs", "azurite", "fake_gcs"])
def test_servers_listen_on_loopback_only(kind, request):
    server = request.getfixturevalue(kind)
    assert listening_addresses(server) == {"127.0.0.1"}


def test_azurite_sends_no_telemetry(azurite):
    """With telemetry on, Azurite keeps an instance id for Application Insights in its data folder."""
    azurite.create_bucket("telemetry-probe")
    assert azurite.data_dir.is_dir()
    assert not (azurite.data_dir / "AzuriteConfig").exists()


def test_seaweedfs_reports_no_cluster_statistics(seaweedfs):
    assert "-master.telemetry=false" in seaweedfs.command()
