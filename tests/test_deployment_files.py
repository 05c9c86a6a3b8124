"""The deployment files stay valid: Kubernetes values and manifests, the Dockerfile, instance configs."""

from __future__ import annotations

import shutil
import subprocess
import sys

import dagster as dg
import yaml

from tests.support import ROOT


def test_kubernetes_files_validate():
    run = subprocess.run(
        [sys.executable, str(ROOT / "deployments" / "kubernetes" / "validate.py")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert " 0 failed" in run.stdout


def test_local_instance_config_loads(tmp_path, monkeypatch):
    shutil.copy(ROOT / "deployments" / "local" / "dagster.yaml", tmp_path / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    instance = dg.DagsterInstance.get()
    assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
    assert yaml.safe_load((tmp_path / "dagster.yaml").read_text())["telemetry"] == {"enabled": False}
