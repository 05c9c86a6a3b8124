"""Reference-generator environment for the benchmarks.

The reference is PyPI ``data-designer==0.9.7`` (NVIDIA DataDesigner).  It is
installed into its own virtual environment under ``<project>/.bench/venvs``
so that its dependencies never mix with ours, and its workload scripts in
``bench/reference/`` are run there in a subprocess.

Stdlib only: this module is imported by our own benchmarks under our venv.

    ensure_reference_python() -> Path   # create/reuse the venv, return its python
    run_reference(script, args, timeout) -> dict
        # run bench/reference/<script> there; last stdout line parsed as JSON,
        # plus "peak_rss_mb" (peak RSS of that child process only, via wait4)
"""

from __future__ import annotations

import fcntl
import os
import pathlib
import subprocess
import sys
import time

from measure import run_measured

REFERENCE_SPEC = "data-designer==0.9.7"
EXTRA_PACKAGES: list[str] = []  # RSS is read by the parent via wait4: no psutil needed

BENCH_DIR = pathlib.Path(__file__).resolve().parent
PROJECT_ROOT = BENCH_DIR.parent
REFERENCE_DIR = BENCH_DIR / "reference"
VENV_DIR = PROJECT_ROOT / ".bench" / "venvs" / "data-designer-0.9.7"
MARKER = VENV_DIR / ".installed-ok"

# Keep the reference off the network apart from what a workload asks for
# (the LLM workload talks to a server on 127.0.0.1).  See also reference/_common.py.
REFERENCE_ENV = {
    "PYTHONUNBUFFERED": "1",
    "PYTHONDONTWRITEBYTECODE": "1",  # no __pycache__ in bench/reference
    # Its sampler columns are drawn in a networkx topological order that
    # depends on string hashing; fixed, so that --seed is reproducible.
    "PYTHONHASHSEED": "0",
    "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    "HF_HUB_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "NEMO_TELEMETRY_ENABLED": "false",  # data-designer's usage telemetry (POSTs to NVIDIA)
}


def _log(msg: str) -> None:
    print(f"[reference_env] {msg}", file=sys.stderr, flush=True)


def _python_path() -> pathlib.Path:
    return VENV_DIR / "bin" / "python"


def _works(python: pathlib.Path) -> bool:
    if not python.exists():
        return False
    probe = "import importlib.metadata as m; print(m.version('data-designer'))"
    try:
        out = subprocess.run([str(python), "-c", probe], capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and out.stdout.strip() == REFERENCE_SPEC.split("==")[1]


def ensure_reference_python() -> pathlib.Path:
    """Create (once) the reference venv and return its python interpreter."""
    python = _python_path()
    if MARKER.exists() and _works(python):
        return python
    VENV_DIR.parent.mkdir(parents=True, exist_ok=True)
    with open(VENV_DIR.parent / ".data-designer-0.9.7.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be installing it
        if MARKER.exists() and _works(python):
            return python
        t0 = time.monotonic()
        _log(f"creating venv {VENV_DIR}")
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV_DIR)], check=True)
        _log(f"installing {' '.join([REFERENCE_SPEC, *EXTRA_PACKAGES])} (takes ~1.5 min) ...")
        subprocess.run(
            [
                str(python),
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                REFERENCE_SPEC,
                *EXTRA_PACKAGES,
            ],
            check=True,
            stdout=sys.stderr,
        )
        if not _works(python):
            raise RuntimeError(f"{REFERENCE_SPEC} not importable in {VENV_DIR}")
        MARKER.write_text(f"{REFERENCE_SPEC}\ninstalled in {time.monotonic() - t0:.1f}s\n")
        _log(f"reference venv ready in {time.monotonic() - t0:.1f}s")
    return python


def run_reference(script_name: str, args: list[str], timeout: float) -> dict:
    """Run ``bench/reference/<script_name>`` with the reference python.

    Returns the JSON object printed on the script's last stdout line, with
    ``peak_rss_mb`` added: the child's own peak RSS (see ``measure.run_measured``).
    """
    python = ensure_reference_python()
    command = [str(python), str(REFERENCE_DIR / script_name), *map(str, args)]
    return run_measured(command, env={**os.environ, **REFERENCE_ENV}, timeout=timeout)


if __name__ == "__main__":
    print(ensure_reference_python())
