"""Shared, expensive set-up of the hostile corpus: finished and partial datasets (made once and
copied per case), a misbehaving OpenAI-compatible server on 127.0.0.1, and real full and
read-only file systems."""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
import yaml

from dd_core import generate
from dd_core.testing.llm_server import OpenAIServer
from tests.hostile.harness import SECRET
from tests.support import EXAMPLES

CUSTOMERS = EXAMPLES / "customers.yaml"
KEY_ENV = "DD_HOSTILE_API_KEY"


class _Stop(Exception):
    pass


@pytest.fixture(scope="session")
def made(tmp_path_factory) -> dict[str, Path]:
    """Datasets made once: 'done' (3 row groups of 200, complete) and 'partial' (2 of 4 finished)."""
    root = tmp_path_factory.mktemp("made")
    done = generate(CUSTOMERS, 600, buffer_size=200, artifact_path=root, dataset_name="done").path

    def stop_after_two(done_groups: int, total: int) -> None:
        if done_groups == 2:
            raise _Stop

    with contextlib.suppress(_Stop):
        generate(CUSTOMERS, 800, buffer_size=200, artifact_path=root, dataset_name="partial", progress=stop_after_two)
    return {"done": done, "partial": root / "partial"}


@pytest.fixture
def done(made, tmp_path) -> Path:
    """A private copy of the finished dataset (links kept as links)."""
    return Path(shutil.copytree(made["done"], tmp_path / "ds", symlinks=True))


@pytest.fixture
def partial(made, tmp_path) -> Path:
    return Path(shutil.copytree(made["partial"], tmp_path / "ds", symlinks=True))


@pytest.fixture(scope="session")
def server():
    """A real HTTP server speaking the OpenAI protocol, requiring the corpus's API key."""
    with OpenAIServer(api_key=SECRET) as srv:
        yield srv


@pytest.fixture
def llm(server):
    """The server with no fault rules, and the environment that holds its key; rules are cleared after."""
    server.clear_faults()
    yield server
    server.clear_faults()


def llm_config(base_url: str, **model) -> dict:
    """Two LLM-written columns over a sampler, one model."""
    return {
        "name": "llm",
        "models": [
            {
                "alias": "writer",
                "model": "test-model",
                "base_url": base_url,
                "api_key_env": KEY_ENV,
                "max_parallel_requests": 4,
                "max_retries": 1,
                **model,
            }
        ],
        "columns": [
            {"name": "topic", "type": "category", "values": ["cats", "ships", "tea"]},
            {"name": "question", "type": "llm_text", "model": "writer", "prompt": "Ask about {{ topic }}."},
        ],
    }


def write_config(path: Path, config: dict | str) -> Path:
    path.write_text(config if isinstance(config, str) else yaml.safe_dump(config, sort_keys=False))
    return path


@pytest.fixture
def key_env() -> dict[str, str]:
    return {KEY_ENV: SECRET}


# --- real faulty file systems -------------------------------------------------------------


def _mount(*args: str) -> bool:
    return subprocess.run(["mount", *args], capture_output=True).returncode == 0


@contextlib.contextmanager
def _mounted_tmpfs(folder: Path, size: str):
    folder.mkdir(parents=True, exist_ok=True)
    if not _mount("-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)):
        yield False
        return
    try:
        yield True
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


@pytest.fixture
def full_disk(tmp_path):
    """A folder on a tmpfs of 160 KiB: writes past that fail with a real ENOSPC.

    Without the right to mount, a real but unprivileged fault instead: RLIMIT_FSIZE makes
    any write past 160 KiB fail with EFBIG (SIGXFSZ ignored so the write returns the error)."""
    folder = tmp_path / "small-disk"
    with _mounted_tmpfs(folder, "160k") as mounted:
        if mounted:
            yield folder
            return
        soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (160 * 1024, hard))
        try:
            yield folder
        finally:
            resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
            signal.signal(signal.SIGXFSZ, previous)


@pytest.fixture
def read_only(tmp_path):
    """``make(folder)`` turns a folder (with its content) read-only for real: a read-only bind
    mount over it (root ignores permission bits). Without the right to mount, permission bits
    (which do stop a user other than root)."""
    mounts = []

    def make(folder: Path) -> Path:
        if _mount("--bind", str(folder), str(folder)) and _mount("-o", "remount,ro,bind", str(folder)):
            mounts.append(folder)
            return folder
        if os.geteuid() == 0:
            pytest.fail("cannot make a read-only folder: mount refused and root ignores permission bits")
        for path in [folder, *folder.rglob("*")]:
            path.chmod(path.stat().st_mode & ~0o222)
        return folder

    yield make
    for folder in reversed(mounts):
        subprocess.run(["umount", "-l", str(folder)], check=False)
