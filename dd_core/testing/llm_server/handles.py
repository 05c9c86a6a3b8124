"""Python handles on a test server: start it, stop it, and steer it through its control API, with
the server on an event loop in a thread of this process (:class:`OpenAIServer`) or in a child
process that shares no GIL with the code under test (:class:`OpenAIServerProcess`)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import signal
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Self

import httpx
from aiohttp import web

from dd_core.testing.llm_server.latency import Serving
from dd_core.testing.llm_server.service import DEFAULT_MODELS, HOST, ChatService, start_serving

_SOURCE_ROOT = str(Path(__file__).resolve().parents[3])
_API_KEY_ENV = "DD_TEST_OPENAI_API_KEY"


class _ServerHandle:
    """Start/stop plus a client of the HTTP control API; subclasses decide where the server runs."""

    def __init__(
        self,
        *,
        latency_ms: float = 0,
        jitter_ms: float = 0,
        latency_sigma: float = 0,
        latency_seed: int = 0,
        slots: int | None = None,
        metrics: bool = True,
        models: Iterable[str] = DEFAULT_MODELS,
        api_key: str | None = None,
        port: int = 0,
        refuse: Iterable[str] = (),
    ):
        self.models = tuple(models)
        self.api_key = api_key
        #: Ways of asking for structured output answered 400 (``service.REFUSABLE``).
        self.refuse = tuple(refuse)
        self.port: int | None = None
        self.serving = Serving(latency_ms, jitter_ms, latency_sigma, latency_seed, slots, metrics)
        self._requested_port = port
        self._control: httpx.Client | None = None

    @property
    def base_url(self) -> str:
        """OpenAI base URL of the running server, e.g. ``http://127.0.0.1:PORT/v1``."""
        return f"http://{HOST}:{self.port}/v1"

    @property
    def root_url(self) -> str:
        """The server's root, ``http://127.0.0.1:PORT``: the ``base_url`` of an Azure OpenAI model
        (a resource endpoint, the listed models its deployments) and of an Anthropic model."""
        return f"http://{HOST}:{self.port}"

    def start(self) -> Self:
        """Start the server; returns once its socket is listening."""
        if self._control is not None:
            raise RuntimeError("the server is already running")
        self.port = self._launch()
        root = self.base_url.removesuffix("/v1")  # a TLS server's own certificate is not checked here
        self._control = httpx.Client(
            base_url=f"{root}/_control", timeout=30.0, trust_env=False, verify=not root.startswith("https")
        )
        return self

    def stop(self) -> None:
        if self._control is None:
            return
        self._control.close()
        self._control = None
        self._shutdown()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def set_faults(self, rules: Iterable[Mapping[str, Any]]) -> None:
        """Replace the fault rules (JSON objects as described by ``faults.FaultRule``)."""
        self._call("POST", "/faults", {"rules": list(rules)})

    def clear_faults(self) -> None:
        self._call("DELETE", "/faults")

    def release(self, name: str | None = None) -> None:
        """Let the requests held by the ``hold`` rule ``name`` (by every hold rule: None) go on,
        and the ones it picks from now on; ``stats()["held"]`` counts those waiting."""
        self._call("POST", "/release", None if name is None else {"name": name})

    def stats(self) -> dict[str, Any]:
        return self._call("GET", "/stats")

    def reset_stats(self) -> None:
        self._call("POST", "/reset")

    def set_latency(self, ms: float, jitter_ms: float = 0, *, sigma: float = 0) -> None:
        self._call("POST", "/latency", {"latency_ms": ms, "jitter_ms": jitter_ms, "sigma": sigma})

    @property
    def metrics_url(self) -> str:
        return f"http://{HOST}:{self.port}/metrics"

    def set_rate_limits(self, **settings: Any) -> None:
        """Enforce ``rate_limits.RateLimitSettings`` (fields as keywords); ``clear_rate_limits`` removes them."""
        self._call("POST", "/rate_limits", settings)

    def clear_rate_limits(self) -> None:
        self._call("DELETE", "/rate_limits")

    def rate_limit_log(self) -> dict[str, Any]:
        """The settings and every chat request's arrival (``t``, ``tokens``, ``admitted``)."""
        return self._call("GET", "/rate_limits")

    def set_batch_settings(self, **settings: Any) -> None:
        """How batches created from now on behave (``openai_batches.BatchSettings`` fields as keywords)."""
        self._call("POST", "/batches", settings)

    def batch_stats(self) -> dict[str, Any]:
        """Counts of Files/Batch API calls, every batch with its request keys, and the call log."""
        return self._call("GET", "/batches")

    def reset_batches(self) -> None:
        self._call("DELETE", "/batches")

    def stop_batch_clock(self) -> None:
        """Batches stay in their state until ``advance_batch_clock`` moves their clock on."""
        self._call("POST", "/batches/clock", {"stopped": True})

    def advance_batch_clock(self, seconds: float) -> None:
        self._call("POST", "/batches/clock", {"advance_s": seconds})

    def run_batch_clock(self) -> None:
        """The batch clock runs again (from where it stood)."""
        self._call("POST", "/batches/clock", {"stopped": False})

    def reset_for_next_test(self) -> None:
        """What one test of a shared server leaves is gone: batches and files, batch settings and
        clock, fault rules, counters."""
        self.reset_batches()
        self.run_batch_clock()
        self.set_batch_settings()
        self.clear_faults()
        self.reset_stats()

    def _call(self, method: str, path: str, payload: Any = None) -> Any:
        """Call the control API; a 400 (bad rules or latency) becomes ValueError."""
        if self._control is None:
            raise RuntimeError("the server is not running")
        response = self._control.request(method, path, json=payload)
        if response.status_code == 400:
            raise ValueError(response.json()["error"]["message"])
        response.raise_for_status()
        return response.json()

    def _launch(self) -> int:
        """Start serving and return the bound port."""
        raise NotImplementedError

    def _shutdown(self) -> None:
        raise NotImplementedError


class OpenAIServer(_ServerHandle):
    """The server on its own event loop in a daemon thread of this process; over TLS (``https://``)
    with ``ssl_context``."""

    _loop: asyncio.AbstractEventLoop
    _thread: threading.Thread
    _runner: web.AppRunner

    def __init__(self, *, ssl_context: ssl.SSLContext | None = None, **settings: Any):
        super().__init__(**settings)
        self.ssl_context = ssl_context

    @property
    def base_url(self) -> str:
        return f"{'https' if self.ssl_context else 'http'}://{HOST}:{self.port}/v1"

    def _launch(self) -> int:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="dd-openai-server", daemon=True)
        self._thread.start()
        service = ChatService(serving=self.serving, models=self.models, api_key=self.api_key, refuse=self.refuse)
        try:
            self._runner, port = self._run(start_serving(service, HOST, self._requested_port, self.ssl_context))
        except BaseException:
            self._stop_loop()
            raise
        return port

    def _shutdown(self) -> None:
        self._run(self._runner.cleanup())
        self._stop_loop()

    def _run(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=30)

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()


class OpenAIServerProcess(_ServerHandle):
    """The server in a child process with its own process group (no GIL shared with the caller)."""

    startup_timeout_s = 30.0
    stop_grace_s = 5.0
    process: subprocess.Popen[str] | None = None

    def _launch(self) -> int:
        # Put this module's source root first so the child runs the same code as this process.
        python_path = [_SOURCE_ROOT, *filter(None, [os.environ.get("PYTHONPATH")])]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(python_path)}
        command = [
            sys.executable, "-m", __package__,  # runs this package's __main__ (cli.main)
            "--port", str(self._requested_port),
            *self.serving.options(),
            "--model", *self.models,
            *(arg for way in self.refuse for arg in ("--refuse", way)),
        ]  # fmt: skip
        if self.api_key is not None:
            env[_API_KEY_ENV] = self.api_key  # via the environment, not the visible command line
            command += ["--api-key-env", _API_KEY_ENV]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, env=env, text=True, process_group=0)
        try:
            return _read_listening_port(self.process, self.startup_timeout_s)
        except BaseException:
            self._shutdown()
            raise

    def _shutdown(self) -> None:
        """SIGTERM the child's process group, SIGKILL it after the grace period, and reap it."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=self.stop_grace_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


def _read_listening_port(process: subprocess.Popen[str], timeout_s: float) -> int:
    """The port from the child's first stdout line, ``LISTENING <port>``."""
    ready, _, _ = select.select([process.stdout], [], [], timeout_s)
    line = process.stdout.readline() if ready else ""
    process.stdout.close()
    if not line.startswith("LISTENING "):
        raise RuntimeError(f"the server process did not start (exit code {process.poll()}, first line {line!r})")
    return int(line.split()[1])
