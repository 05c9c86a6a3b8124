"""Real Dagster services for end-to-end tests, driven over GraphQL as the UI drives them.

`DagsterServices` starts `dagster-webserver` and `dagster-daemon` on one DAGSTER_HOME and never
leaves a process behind. The functions below it take a `DagsterServices` (their timeouts then
fail fast if a service dies, and quote its logs) or any `graphql(query, variables) -> data`
callable. Measured on Dagster 1.13.27 (SQLite, 2 cores); see the docstrings for the why.
"""

from __future__ import annotations

import atexit
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import httpx
import psutil
import yaml

T = TypeVar("T")
GraphQL = Callable[..., dict]

TERMINAL_BACKFILL_STATUSES = ("COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED")
TERMINAL_RUN_STATUSES = ("SUCCESS", "FAILURE", "CANCELED")
BACKFILL_TAG = "dagster/backfill"
STOP_GRACE_SECONDS = 10.0


class DagsterServiceError(RuntimeError):
    """Dagster answered with an error, or did not reach the expected state in time."""


# --------------------------------------------------------------------------- instance settings


def sqlite_instance_config(*, monitoring_poll_seconds: int = 1, dequeue_interval_seconds: int = 1) -> dict:
    """Instance settings for tests: SQLite storage (the default under DAGSTER_HOME), no telemetry.

    Run monitoring is on, but with the DefaultRunLauncher it does not detect a dead run worker
    (`supports_check_run_worker_health` is False): the code server that spawned the worker marks
    the run FAILURE (its cleanup thread checks every 0.5 s; measured 1-2 s after a SIGKILL).
    Monitoring still enforces `start_timeout_seconds`, `cancel_timeout_seconds` and
    `max_runtime_seconds`; a run whose worker and code server both die stays STARTED (measured:
    still STARTED 96 s later) unless `max_runtime_seconds` or a `dagster/max_runtime` tag is set.
    """
    return {
        "telemetry": {"enabled": False},
        "run_queue": {"dequeue_interval_seconds": dequeue_interval_seconds},
        "run_monitoring": {
            "enabled": True,
            "poll_interval_seconds": monitoring_poll_seconds,
            "start_timeout_seconds": 180,
            "cancel_timeout_seconds": 60,
            "max_resume_run_attempts": 0,
        },
        "code_servers": {"local_startup_timeout": 180},
    }


def write_instance_yaml(dagster_home: str | Path, config: Mapping[str, Any]) -> Path:
    path = Path(dagster_home) / "dagster.yaml"
    path.write_text(yaml.safe_dump(dict(config), sort_keys=False))
    return path


# --------------------------------------------------------------------------- processes


def processes_using_dagster_home(dagster_home: str | Path) -> list[psutil.Process]:
    """Live processes (other than this one) whose environment has this DAGSTER_HOME."""
    home = str(Path(dagster_home).resolve())
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.pid != os.getpid() and proc.environ().get("DAGSTER_HOME") == home and _alive(proc):
                found.append(proc)
        except psutil.Error:
            continue
    return found


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _with_descendants(pid: int) -> set[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return {root, *root.children(recursive=True)}
    except psutil.Error:
        return set()


def _kill_all(procs: Iterable[psutil.Process]) -> None:
    procs = [proc for proc in procs if _alive(proc)]
    for proc in procs:
        try:
            proc.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(procs, timeout=5)


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def _venv_executable(name: str) -> str:
    return str(Path(sys.executable).parent / name)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _workspace_file(code: str | Path, dagster_home: Path) -> Path:
    """`code` is a workspace YAML, a Python file, or a dotted module name."""
    path = Path(code)
    if path.suffix in (".yaml", ".yml"):
        return path.resolve()
    if path.suffix == ".py":
        target = {"python_file": {"relative_path": str(path.resolve())}}
    else:
        target = {"python_module": {"module_name": str(code)}}
    workspace = dagster_home / "workspace.yaml"
    workspace.write_text(yaml.safe_dump({"load_from": [target]}))
    return workspace


# --------------------------------------------------------------------------- services


class DagsterServices:
    """`dagster-webserver` + `dagster-daemon` on one DAGSTER_HOME, as a context manager.

    `code` is a workspace YAML, a Python file or a module name. `instance_config`, if given,
    is written to DAGSTER_HOME/dagster.yaml (else an existing one, or Dagster's defaults, apply).
    `env` is added to both services' environment, so run workers inherit it.
    """

    def __init__(
        self,
        dagster_home: str | Path,
        code: str | Path,
        *,
        instance_config: Mapping[str, Any] | None = None,
        env: Mapping[str, str] | None = None,
        startup_timeout: float = 180.0,
    ) -> None:
        self.dagster_home = Path(dagster_home).resolve()
        self.dagster_home.mkdir(parents=True, exist_ok=True)
        if instance_config is not None:
            write_instance_yaml(self.dagster_home, instance_config)
        self.workspace = _workspace_file(code, self.dagster_home)
        self.url = f"http://127.0.0.1:{_free_port()}"
        # Not DAGSTER_HOME/logs: that is Dagster's telemetry queue, which its upload thread empties.
        self.log_dir = self.dagster_home / "service-logs"
        self._env = {
            **os.environ,
            **(env or {}),
            "DAGSTER_HOME": str(self.dagster_home),
            "PYTHONUNBUFFERED": "1",
            "DAGSTER_DISABLE_TELEMETRY": "1",  # the upload thread ignores dagster.yaml's telemetry setting
        }
        self._startup_timeout = startup_timeout
        self._procs: dict[str, subprocess.Popen] = {}
        self._http = httpx.Client(timeout=60)

    def __enter__(self) -> DagsterServices:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def pids(self) -> dict[str, int]:
        return {name: proc.pid for name, proc in self._procs.items()}

    def start(self) -> None:
        """Start both services and wait until the code locations loaded and the daemons heartbeat."""
        atexit.register(self.stop)
        try:
            self._create_storage()
            port = self.url.rsplit(":", 1)[1]
            self._spawn("webserver", "dagster-webserver", "-h", "127.0.0.1", "-p", port, "-w", str(self.workspace))
            self._spawn("daemon", "dagster-daemon", "run", "-w", str(self.workspace))
            self._wait_until_ready()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """SIGTERM both process groups, SIGKILL them after a grace period, then kill leftovers.

        Run workers are `multiprocessing` children of a code server of the daemon (which starts a
        new code server every 60 s and lets the old one live while its runs do) and outlive it
        if it is SIGKILLed, so the descendants are listed before signalling; processes carrying
        this DAGSTER_HOME in their environment are caught as well (e.g. workers already orphaned).
        """
        atexit.unregister(self.stop)
        owned = self._owned_processes()
        for proc in self._procs.values():
            _signal_group(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for proc in self._procs.values():
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(proc.pid, signal.SIGKILL)
                proc.wait()
        _kill_all(owned | self._owned_processes())
        self._procs.clear()
        self._http.close()

    def graphql(self, query: str, variables: Mapping[str, Any] | None = None) -> dict:
        """POST to /graphql and return `data`; raise with the messages if there are `errors`."""
        response = self._http.post(f"{self.url}/graphql", json={"query": query, "variables": dict(variables or {})})
        try:
            payload = response.json()
        except ValueError:
            raise DagsterServiceError(f"GraphQL HTTP {response.status_code}: {response.text[:2000]}") from None
        if payload.get("errors"):
            messages = "; ".join(error.get("message", str(error)) for error in payload["errors"])
            raise DagsterServiceError(f"GraphQL errors: {messages}")
        return payload["data"]

    def logs(self, lines: int = 60) -> str:
        """The last lines of both services' logs, for assertion messages."""
        parts = []
        for name in ("webserver", "daemon"):
            path = self.log_dir / f"{name}.log"
            tail = path.read_text(errors="replace").splitlines()[-lines:] if path.exists() else ["(no log)"]
            parts.append(f"----- {name} ({path}) -----\n" + "\n".join(tail))
        return "\n".join(parts)

    def ensure_running(self) -> None:
        for name, proc in self._procs.items():
            if proc.poll() is not None:
                raise DagsterServiceError(f"{name} exited with code {proc.returncode}\n{self.logs()}")

    def _create_storage(self) -> None:
        """Create the instance's databases before the services start.

        On a new SQLite DAGSTER_HOME the webserver, the daemon and their code servers race to
        create the schedule storage and can stamp it twice ("Version table 'alembic_version' has
        more than one head present"), which fails a code location load.
        """
        self.log_dir.mkdir(exist_ok=True)
        migrate = subprocess.run(
            [_venv_executable("dagster"), "instance", "migrate"],
            env=self._env,
            cwd=self.dagster_home,
            capture_output=True,
            text=True,
            timeout=self._startup_timeout,
        )
        (self.log_dir / "migrate.log").write_text(migrate.stdout + migrate.stderr)
        if migrate.returncode:
            raise DagsterServiceError(f"dagster instance migrate failed:\n{migrate.stdout}{migrate.stderr}")

    def _spawn(self, name: str, executable: str, *args: str) -> None:
        with open(self.log_dir / f"{name}.log", "ab") as log:
            self._procs[name] = subprocess.Popen(
                [_venv_executable(executable), *args],
                env=self._env,
                cwd=self.dagster_home,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def _owned_processes(self) -> set[psutil.Process]:
        owned = set(processes_using_dagster_home(self.dagster_home))
        for proc in self._procs.values():
            owned |= _with_descendants(proc.pid)
        return owned

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + self._startup_timeout
        for fetch, done, what in (
            (self._webserver_answers, bool, "the webserver to answer /server_info"),
            (self._location_entries, _all_loaded, "the code locations to load"),
            (self._required_daemons, _all_healthy, "the required daemons to heartbeat"),
        ):
            poll(self, fetch, done, max(1.0, deadline - time.monotonic()), what)

    def _webserver_answers(self) -> bool:
        try:
            return self._http.get(f"{self.url}/server_info").status_code == 200
        except httpx.TransportError:
            return False

    def _location_entries(self) -> list[dict]:
        """Location entries; raises at once if one failed to load."""
        workspace = _expect(self.graphql(_WORKSPACE)["workspaceOrError"], "Workspace", "workspaceOrError")
        for entry in workspace["locationEntries"]:
            error = entry["locationOrLoadError"]
            if error and error["__typename"] == "PythonError":
                raise DagsterServiceError(f"code location {entry['name']!r} failed to load: {_describe_error(error)}")
        return workspace["locationEntries"]

    def _required_daemons(self) -> list[dict]:
        """Statuses of the daemons this instance requires (SENSOR, BACKFILL, plus
        QUEUED_RUN_COORDINATOR, MONITORING, ... depending on dagster.yaml)."""
        statuses = self.graphql(_DAEMON_HEALTH)["instance"]["daemonHealth"]["allDaemonStatuses"]
        return [status for status in statuses if status["required"]]


def _all_loaded(entries: list[dict]) -> bool:
    return bool(entries) and all(entry["loadStatus"] == "LOADED" for entry in entries)


def _all_healthy(statuses: list[dict]) -> bool:
    return bool(statuses) and all(status["healthy"] for status in statuses)


# --------------------------------------------------------------------------- polling and errors

Target = DagsterServices | GraphQL


def _graphql(svc: Target) -> GraphQL:
    return svc.graphql if isinstance(svc, DagsterServices) else svc


def poll(
    svc: Target, fetch: Callable[[], T], done: Callable[[T], bool], timeout: float, what: str, interval: float = 0.5
) -> T:
    """Call `fetch` until `done(value)`; on timeout raise with the last value and the services' logs."""
    deadline = time.monotonic() + timeout
    while True:
        if isinstance(svc, DagsterServices):
            svc.ensure_running()
        value = fetch()
        if done(value):
            return value
        if time.monotonic() >= deadline:
            logs = svc.logs() if isinstance(svc, DagsterServices) else ""
            raise DagsterServiceError(f"timed out after {timeout:.0f} s waiting for {what}; last: {value!r}\n{logs}")
        time.sleep(interval)


def _expect(result: dict, typename: str, action: str) -> dict:
    """Return `result` if it is a `typename`, else raise with the error it holds."""
    if result.get("__typename") != typename:
        raise DagsterServiceError(f"{action} returned {result.get('__typename')}: {_describe_error(result)}")
    return result


def _describe_error(error: dict) -> str:
    """A PythonError with its stack and chained causes (the user's exception is usually a cause)."""
    if "stack" not in error:
        return json.dumps(error, indent=2)[:4000]
    parts = [error["message"], *error["stack"]]
    for link in error.get("errorChain", []):
        parts += ["caused by:", link["error"]["message"], *link["error"]["stack"]]
    return "".join(part if part.endswith("\n") else part + "\n" for part in parts)


_PYTHON_ERROR = "message stack errorChain { error { message stack } }"
_ERROR = f"__typename ... on Error {{ message }} ... on PythonError {{ {_PYTHON_ERROR} }}"
_LAUNCH_ERROR = _ERROR + " ... on PipelineConfigValidationInvalid { errors { message } }"

_WORKSPACE = f"""
query {{ workspaceOrError {{ ... on Workspace {{ locationEntries {{
  name loadStatus
  locationOrLoadError {{ __typename ... on RepositoryLocation {{ repositories {{ name }} }} ... on PythonError {{ {_PYTHON_ERROR} }} }}
}} }} {_ERROR} }} }}
"""

_DAEMON_HEALTH = """
query { instance { daemonHealth { allDaemonStatuses { daemonType required healthy } } } }
"""


# --------------------------------------------------------------------------- code locations


def repository_selector(svc: Target, location: str | None = None, repository: str | None = None) -> dict:
    """`{repositoryLocationName, repositoryName}`; names may be omitted when there is only one."""
    workspace = _expect(_graphql(svc)(_WORKSPACE)["workspaceOrError"], "Workspace", "workspaceOrError")
    candidates = [
        {"repositoryLocationName": entry["name"], "repositoryName": repo["name"]}
        for entry in workspace["locationEntries"]
        if (entry["locationOrLoadError"] or {}).get("__typename") == "RepositoryLocation"
        for repo in entry["locationOrLoadError"]["repositories"]
        if location in (None, entry["name"]) and repository in (None, repo["name"])
    ]
    if len(candidates) != 1:
        raise DagsterServiceError(
            f"expected one repository for location={location} repository={repository}: {candidates}"
        )
    return candidates[0]


# --------------------------------------------------------------------------- sensors

_SENSOR_FIELDS = f"""
  __typename ... on Sensor {{ name sensorState {{ status ticks(limit: 10) {{
    tickId status timestamp endTimestamp skipReason error {{ {_PYTHON_ERROR} }}
    dynamicPartitionsRequestResults {{ partitionsDefName type partitionKeys skippedPartitionKeys }}
  }} }} }}
"""
_START_SENSOR = f"mutation($s: SensorSelector!) {{ startSensor(sensorSelector: $s) {{ {_SENSOR_FIELDS} {_ERROR} }} }}"
_SENSOR = f"query($s: SensorSelector!) {{ sensorOrError(sensorSelector: $s) {{ {_SENSOR_FIELDS} {_ERROR} }} }}"


_STOP_SENSOR = f"""
mutation($id: String!) {{ stopSensor(id: $id) {{ __typename ... on StopSensorMutationResult {{ instigationState {{ status }} }} {_ERROR} }} }}
"""
_SENSOR_STATE_ID = f"query($s: SensorSelector!) {{ sensorOrError(sensorSelector: $s) {{ __typename ... on Sensor {{ sensorState {{ id }} }} {_ERROR} }} }}"


def _sensor_selector(svc: Target, sensor_name: str, location: str | None, repository: str | None) -> dict:
    return {**repository_selector(svc, location, repository), "sensorName": sensor_name}


def start_sensor(svc: Target, sensor_name: str, *, location: str | None = None, repository: str | None = None) -> dict:
    selector = _sensor_selector(svc, sensor_name, location, repository)
    return _expect(_graphql(svc)(_START_SENSOR, {"s": selector})["startSensor"], "Sensor", "startSensor")


def stop_sensor(svc: Target, sensor_name: str, *, location: str | None = None, repository: str | None = None) -> None:
    selector = _sensor_selector(svc, sensor_name, location, repository)
    sensor = _expect(_graphql(svc)(_SENSOR_STATE_ID, {"s": selector})["sensorOrError"], "Sensor", "sensorOrError")
    result = _graphql(svc)(_STOP_SENSOR, {"id": sensor["sensorState"]["id"]})["stopSensor"]
    if _expect(result, "StopSensorMutationResult", "stopSensor")["instigationState"]["status"] != "STOPPED":
        raise DagsterServiceError(f"sensor {sensor_name} did not stop: {result}")


def wait_for_sensor_tick(
    svc: Target,
    sensor_name: str,
    *,
    after: float,
    timeout: float = 120,
    location: str | None = None,
    repository: str | None = None,
) -> dict:
    """The first finished tick that started at or after `after` (epoch seconds).

    A tick that only adds dynamic partitions ends SKIPPED ("no run requests"), not SUCCESS, so
    both count as done; a FAILURE tick raises with its error.
    """
    selector = _sensor_selector(svc, sensor_name, location, repository)

    def finished_ticks() -> list[dict]:
        sensor = _expect(_graphql(svc)(_SENSOR, {"s": selector})["sensorOrError"], "Sensor", "sensorOrError")
        ticks = [t for t in sensor["sensorState"]["ticks"] if t["timestamp"] >= after and t["status"] != "STARTED"]
        for tick in ticks:
            if tick["status"] == "FAILURE":
                raise DagsterServiceError(f"sensor {sensor_name} tick failed: {_describe_error(tick['error'])}")
        return ticks

    return poll(svc, finished_ticks, bool, timeout, f"a finished tick of sensor {sensor_name}")[-1]


def sensor_tick(
    svc: Target, sensor_name: str, *, timeout: float = 120, location: str | None = None, repository: str | None = None
) -> dict:
    """Start the sensor and return its first finished tick.

    The sensor daemon loops every 5 s and evaluates a sensor once `minimum_interval_seconds`
    (default 30) has passed since its last tick; with 1 in the code location the first tick
    finished 3 s after `startSensor`.
    """
    started = time.time()
    start_sensor(svc, sensor_name, location=location, repository=repository)
    return wait_for_sensor_tick(
        svc, sensor_name, after=started, timeout=timeout, location=location, repository=repository
    )


# --------------------------------------------------------------------------- assets

_ASSET_NODE = """
query($key: AssetKeyInput!, $partitions: [String!]) { assetNodeOrError(assetKey: $key) {
  __typename ... on AssetNode { partitionKeys staleStatusByPartition(partitions: $partitions) }
  ... on Error { message }
} }
"""


def _asset_node(svc: Target, asset_path: Sequence[str], partitions: Sequence[str] = ()) -> dict:
    variables = {"key": {"path": list(asset_path)}, "partitions": list(partitions)}
    return _expect(_graphql(svc)(_ASSET_NODE, variables)["assetNodeOrError"], "AssetNode", "assetNodeOrError")


def partition_keys(svc: Target, asset_path: Sequence[str]) -> list[str]:
    return _asset_node(svc, asset_path)["partitionKeys"]


def stale_status_by_partition(svc: Target, asset_path: Sequence[str], partitions: Sequence[str]) -> dict[str, str]:
    """MISSING / STALE / FRESH per partition (plain `staleStatus` says FRESH for partitioned assets)."""
    return dict(zip(partitions, _asset_node(svc, asset_path, partitions)["staleStatusByPartition"]))


# --------------------------------------------------------------------------- backfills

_LAUNCH_BACKFILL = f"""
mutation($p: LaunchBackfillParams!) {{ launchPartitionBackfill(backfillParams: $p) {{
  ... on LaunchBackfillSuccess {{ backfillId }}
  ... on PartitionKeysNotFoundError {{ partitionKeys }}
  {_LAUNCH_ERROR}
}} }}
"""
_REEXECUTE_BACKFILL = f"""
mutation($p: ReexecutionParams!) {{ reexecutePartitionBackfill(reexecutionParams: $p) {{
  ... on LaunchBackfillSuccess {{ backfillId }} {_LAUNCH_ERROR}
}} }}
"""
_BACKFILL = f"""
query($id: String!) {{ partitionBackfillOrError(backfillId: $id) {{
  ... on PartitionBackfill {{
    id status title fromFailure numPartitions error {{ {_PYTHON_ERROR} }}
    assetBackfillData {{ assetBackfillStatuses {{ ... on AssetPartitionsStatusCounts {{
      assetKey {{ path }} numPartitionsTargeted numPartitionsInProgress numPartitionsMaterialized numPartitionsFailed
    }} }} }}
  }}
  {_ERROR}
}} }}
"""


def launch_partition_backfill(
    svc: Target,
    asset_path: Sequence[str],
    partition_names: Sequence[str] | None = None,
    all_partitions: bool = False,
    title: str | None = None,
) -> str:
    """Launch an asset backfill as the UI does; returns the backfill id."""
    if (partition_names is None) != all_partitions:
        raise ValueError("pass either partition_names or all_partitions=True")
    params: dict[str, Any] = {
        "assetSelection": [{"path": list(asset_path)}],
        "fromFailure": False,
        "tags": [],
        "title": title,
    }
    params |= {"allPartitions": True} if all_partitions else {"partitionNames": list(partition_names or [])}
    result = _graphql(svc)(_LAUNCH_BACKFILL, {"p": params})["launchPartitionBackfill"]
    return _expect(result, "LaunchBackfillSuccess", "launchPartitionBackfill")["backfillId"]


def reexecute_backfill_from_failure(svc: Target, backfill_id: str) -> str:
    """New backfill over the parent's targeted minus materialized partitions; returns its id."""
    params = {"parentRunId": backfill_id, "strategy": "FROM_FAILURE"}
    result = _graphql(svc)(_REEXECUTE_BACKFILL, {"p": params})["reexecutePartitionBackfill"]
    return _expect(result, "LaunchBackfillSuccess", "reexecutePartitionBackfill")["backfillId"]


def backfill_status(svc: Target, backfill_id: str) -> dict:
    """`{id, status, title, fromFailure, numPartitions, error, assets: {"a/b": {numPartitions*}}}`."""
    result = _graphql(svc)(_BACKFILL, {"id": backfill_id})["partitionBackfillOrError"]
    backfill = dict(_expect(result, "PartitionBackfill", "partitionBackfillOrError"))
    statuses = (backfill.pop("assetBackfillData") or {}).get("assetBackfillStatuses", [])
    backfill["assets"] = {"/".join(s.pop("assetKey")["path"]): s for s in statuses if s}
    return backfill


def wait_for_backfill(
    svc: Target, backfill_id: str, timeout: float = 240, terminal_statuses: Sequence[str] = TERMINAL_BACKFILL_STATUSES
) -> dict:
    """Poll until the backfill reaches a terminal status. The backfill daemon ticks every 30 s
    (hard-coded), so even a tiny backfill takes 30-60 s."""
    return poll(
        svc,
        lambda: backfill_status(svc, backfill_id),
        lambda backfill: backfill["status"] in terminal_statuses,
        timeout,
        f"backfill {backfill_id} to reach one of {list(terminal_statuses)}",
        interval=1.0,
    )


# --------------------------------------------------------------------------- runs

_RUN_FIELDS = "runId status jobName tags { key value } creationTime startTime endTime"
_RUNS = f"""
query($f: RunsFilter) {{ runsOrError(filter: $f) {{ ... on Runs {{ results {{ {_RUN_FIELDS} }} }} {_ERROR} }} }}
"""
_RUN = f"query($id: ID!) {{ runOrError(runId: $id) {{ ... on Run {{ {_RUN_FIELDS} }} {_ERROR} }} }}"
_LAUNCH_RUN = f"""
mutation($p: ExecutionParams!) {{ launchRun(executionParams: $p) {{
  ... on LaunchRunSuccess {{ run {{ runId }} }} {_LAUNCH_ERROR}
}} }}
"""
_RUN_LOGS = """
query($id: ID!) { logsForRun(runId: $id, limit: 1000) {
  __typename ... on EventConnection { events { ... on MessageEvent { message } } } ... on Error { message }
} }
"""
_WORKER_STARTED = re.compile(r"Started process for run \(pid: (\d+)\)")


def _run(raw: dict) -> dict:
    return {**raw, "tags": {tag["key"]: tag["value"] for tag in raw["tags"]}}


def get_run(svc: Target, run_id: str) -> dict:
    return _run(_expect(_graphql(svc)(_RUN, {"id": run_id})["runOrError"], "Run", "runOrError"))


def runs_of_backfill(svc: Target, backfill_id: str) -> list[dict]:
    """Runs tagged `dagster/backfill=<id>`, newest first; `tags` as a dict."""
    run_filter = {"tags": [{"key": BACKFILL_TAG, "value": backfill_id}]}
    runs = _expect(_graphql(svc)(_RUNS, {"f": run_filter})["runsOrError"], "Runs", "runsOrError")
    return [_run(raw) for raw in runs["results"]]


def wait_for_run_status(svc: Target, run_id: str, statuses: Iterable[str], timeout: float = 120) -> dict:
    wanted = set(statuses)
    return poll(
        svc, lambda: get_run(svc, run_id), lambda run: run["status"] in wanted, timeout, f"run {run_id} in {wanted}"
    )


def launch_job_run(
    svc: Target,
    job_name: str,
    *,
    location: str | None = None,
    repository: str | None = None,
    partition_key: str | None = None,
    tags: Mapping[str, str] | None = None,
    run_config: Mapping[str, Any] | None = None,
) -> str:
    """Launch a job run (queued by the QueuedRunCoordinator, launched by the daemon); returns its id."""
    all_tags = {**(tags or {}), **({"dagster/partition": partition_key} if partition_key else {})}
    params = {
        "selector": {**repository_selector(svc, location, repository), "jobName": job_name},
        "runConfigData": dict(run_config or {}),
        "executionMetadata": {"tags": [{"key": key, "value": value} for key, value in all_tags.items()]},
    }
    result = _expect(_graphql(svc)(_LAUNCH_RUN, {"p": params})["launchRun"], "LaunchRunSuccess", "launchRun")
    return result["run"]["runId"]


def run_worker_pid(svc: Target, run_id: str, timeout: float = 120) -> int:
    """PID of the process executing `run_id`, from its "Started process for run (pid: N)" event.

    With the DefaultRunLauncher the worker is a `multiprocessing` spawn child of the code server
    that the daemon started; its command line (`python -c "from multiprocessing.spawn import
    spawn_main; ..." --multiprocessing-fork`) does not name the run, so a psutil scan of command
    lines cannot find it. The event is written as soon as the worker starts.
    """

    def pids() -> list[str]:
        logs = _expect(_graphql(svc)(_RUN_LOGS, {"id": run_id})["logsForRun"], "EventConnection", "logsForRun")
        return [m[1] for event in logs["events"] if (m := _WORKER_STARTED.search(event.get("message", "")))]

    return int(poll(svc, pids, bool, timeout, f"the worker of run {run_id} to start")[-1])


def kill_run_worker(svc: Target, run_id: str, timeout: float = 120) -> int:
    """SIGKILL the run's worker and its children; returns the PID.

    The children are the compute-log capture (`tail -F` and an orphan watcher, per stream) and,
    with the multiprocess executor, the step processes, which would otherwise keep running.
    """
    pid = run_worker_pid(svc, run_id, timeout)
    worker = psutil.Process(pid)
    children = worker.children(recursive=True)
    _kill_all([worker, *children])
    return pid
