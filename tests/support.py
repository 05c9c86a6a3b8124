"""Helpers shared by tests: paths and a runner for the real ``ddsynth`` command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


def run_dd(
    *args: object, cwd: Path | None = None, env: dict | None = None, timeout: float = 120
) -> subprocess.CompletedProcess:
    """Run the dd CLI in a subprocess, exactly as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "dd_core", *map(str, args)],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def dd_generate_dataset(config_path: Path, artifact_path: Path, num_records: int, buffer_size: int):
    """The dataset `ddsynth generate` makes of a config (without injected faults), as a DataFrame:
    what a Dagster-made dataset must equal."""
    from dd_core import load_config, load_dataset

    env = {k: v for k, v in os.environ.items() if not k.startswith("DD_FAULT_")}
    args = [
        Path(sys.executable).parent / "ddsynth",
        "generate",
        config_path,
        "--num-records",
        num_records,
        "--buffer-size",
        buffer_size,
        "--artifact-path",
        artifact_path,
    ]
    done = subprocess.run([str(a) for a in args], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return load_dataset(Path(artifact_path) / load_config(config_path).name)


def wait_for(predicate, timeout: float, what: str) -> None:
    """Poll ``predicate`` every 20 ms until it is true; fail naming ``what`` after ``timeout`` s."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")
