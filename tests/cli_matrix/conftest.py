"""What the CLI matrix shares: one test server, one port where nothing listens, every config of
``examples/`` and ``tests/cli_configs``, and per config (and server state) a finished and an
interrupted dataset made once, copied into each cell that needs one."""

from __future__ import annotations

import contextlib
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
import yaml

from dd_core import GenerationError, ModelOverride, generate, load_config
from dd_core.config.llm_columns import LLMColumn
from dd_core.testing.hub_server import HubServer
from dd_core.testing.llm_server import OpenAIServer
from tests import cli_configs
from tests.support import EXAMPLES

#: Configs of their own besides the examples: name -> writer.
OWN_CONFIGS = {
    "one_column": cli_configs.one_column,
    "forty_columns": cli_configs.forty_columns,
    "odd_values": cli_configs.odd_values,
}
NUM_RECORDS, BUFFER_SIZE = 4, 2


def example_configs() -> dict[str, Path]:
    """Every config in examples/ (a new example joins the matrix by being there)."""
    return {path.stem: path for path in sorted(EXAMPLES.glob("*.yaml"))}


def uses_models(path: Path) -> bool:
    return any(isinstance(c, LLMColumn) for c in load_config(path).columns)


def config_states() -> list[tuple[str, str]]:
    """(config, server state): the LLM configs with the test server up and with nothing listening."""
    states = []
    for name, path in example_configs().items():
        states += [(name, "up"), (name, "down")] if uses_models(path) else [(name, "-")]
    return states + [(name, "-") for name in OWN_CONFIGS]


HUB_TOKEN = "hf_dd_matrix_token_0123456789"


@dataclass
class Prepared:
    config: Path
    finished: Path
    interrupted: Path


class _Stop(Exception):
    pass


def _stop_after_first(done: int, total: int) -> None:
    raise _Stop


class Matrix:
    """The matrix's shared state; ``prepared(config, state)`` makes a config's datasets on first use."""

    def __init__(self, root: Path, server: OpenAIServer, dead_port: int, hub: HubServer):
        self.root = root
        self.server = server
        self.hub = hub
        self.dead_port = dead_port
        self.dead_url = f"http://127.0.0.1:{dead_port}/v1"
        self._prepared: dict[tuple[str, str], Prepared] = {}

    def hub_env(self) -> dict[str, str]:
        """What ``ddsynth push`` needs to reach the local Hub (it has no Xet storage)."""
        return {"HF_ENDPOINT": self.hub.url, "HF_TOKEN": HUB_TOKEN, "HF_HUB_DISABLE_XET": "1"}

    def prepared(self, name: str, state: str) -> Prepared:
        if (name, state) not in self._prepared:
            self._prepared[name, state] = self._prepare(name, state)
        return self._prepared[name, state]

    def _prepare(self, name: str, state: str) -> Prepared:
        folder = self.root / f"{name}-{state}"
        folder.mkdir()
        if name in OWN_CONFIGS:
            config = OWN_CONFIGS[name](folder / "config")
        elif state == "-":
            config = example_configs()[name]
        else:
            config = self._pointed(example_configs()[name], folder / f"{name}.yaml", state)
        # Made while the server is up; a "down" config's datasets name the dead URL in their
        # config.json (the server was there when they were made, it is gone now).
        overrides = {}
        if state == "down":
            models = load_config(config).models
            overrides = {m.alias: ModelOverride(base_url=_moved(m.base_url, self.server.base_url)) for m in models}
        made = folder / "datasets"
        finished = generate(
            config, NUM_RECORDS, buffer_size=BUFFER_SIZE, artifact_path=made, dataset_name="finished",
            model_overrides=overrides,
        ).path  # fmt: skip
        self._interrupted(config, made, overrides)
        return Prepared(config, Path(finished), made / "interrupted")

    def _interrupted(self, config: Path, made: Path, overrides: dict) -> None:
        """A dataset whose first row group is finished and second is not: a run that made one row
        group, then a longer run whose second row group failed. Without LLM columns, a run
        stopped after its first row group (the next one is then never written); with them,
        every call of the second run is answered 400 (row groups run at once, so a run stopped
        after its first could have finished the second too)."""
        if not uses_models(config):
            with contextlib.suppress(_Stop):
                generate(
                    config, NUM_RECORDS, buffer_size=BUFFER_SIZE, artifact_path=made, dataset_name="interrupted",
                    progress=_stop_after_first,
                )  # fmt: skip
            return
        generate(config, BUFFER_SIZE, buffer_size=BUFFER_SIZE, artifact_path=made, dataset_name="interrupted",
                 model_overrides=overrides)  # fmt: skip
        self.server.set_faults([{"kind": "status", "status": 400}])
        try:
            with contextlib.suppress(GenerationError):
                generate(
                    config, NUM_RECORDS, buffer_size=BUFFER_SIZE, artifact_path=made, dataset_name="interrupted",
                    model_overrides=overrides,
                )  # fmt: skip
        finally:
            self.server.clear_faults()
        assert not (made / "interrupted" / "parquet-files" / "batch_00001.parquet").exists()

    def _pointed(self, example: Path, copy: Path, state: str) -> Path:
        """The example with every model's base_url at the test server ("up") or the dead port ("down"),
        its path kept (an Azure resource endpoint has none, an OpenAI-compatible one ends in /v1)."""
        config = yaml.safe_load(example.read_text())
        for model in config.get("models", []):
            model["base_url"] = _moved(model["base_url"], self.server.base_url if state == "up" else self.dead_url)
        copy.write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True))
        return copy


def _moved(url: str, to: str) -> str:
    """``url`` with the scheme, host and port of ``to``."""
    target = urlsplit(to)
    return urlunsplit(urlsplit(url)._replace(scheme=target.scheme, netloc=target.netloc))


@pytest.fixture(scope="session")
def matrix(tmp_path_factory):
    with socket.socket() as dead, OpenAIServer() as server, HubServer(tokens={HUB_TOKEN: "dd-user"}) as hub:
        dead.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
        yield Matrix(tmp_path_factory.mktemp("cli-matrix"), server, dead.getsockname()[1], hub)


def fresh_copy(dataset: Path, into: Path) -> Path:
    return Path(shutil.copytree(dataset, into / dataset.name, symlinks=True))
