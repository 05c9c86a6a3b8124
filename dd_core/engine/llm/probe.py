"""Every model a run will call is reached once before any work is spent (before a dataset folder
is made or a row group started): a server that is down, a wrong URL or a refused key is one
message at once, instead of retries, a lost row group and a long log.

Each model gets the cheapest request its provider offers (``PROBES``). OpenAI-compatible
servers: ``GET {base_url}/models``, the same request for batch-mode models; only when that list
does not name the model (llama-server serves any name) or the server has no ``/models`` (404 or
405), one chat completion of ``max_tokens: 1`` follows. Azure OpenAI: the resource's model list
(``GET /openai/models``; Azure has no cheap read of a deployment). Anthropic:
``GET /v1/models/{model}``. The verdict:

- **unreachable**: no connection (refused, unknown host, no route, none within the model's
  ``connect_timeout_s``), a TLS failure, no answer within ``PROBE_TIMEOUT_S`` (or the model's
  shorter ``timeout_s``), a connection closed without an answer;
- **refused**: 401 or 403 (the key), 404 from the chat completion (the model, or a base_url
  whose path is not the API's);
- **reachable**: any other answer. A 429 or a 5xx comes from a server that is there, and the
  run's retries handle it as they handle any call.

Models sharing a base_url, key and model name are probed once. Every failure is raised in one
``ModelEndpointError`` (exit 7) naming each model's alias and base_url (without user, password
or query), the cause and the fix. When every model answered, each one that structured or judge
columns ask for JSON gets one request of ``max_tokens: 1`` shaped their way
(``structured_check``): a server refusing the model's ``structured_output`` is a config error
(exit 2) naming the option to change.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

import aiohttp
import orjson

from dd_core.config.dataset import DatasetConfig
from dd_core.config.llm_columns import LLMColumn
from dd_core.config.models import ModelConfig
from dd_core.engine.llm.client import error_message, read_body
from dd_core.engine.llm.cost import Spend
from dd_core.engine.llm.providers import anthropic_messages, azure
from dd_core.engine.llm.replies import MalformedReply, parse_json
from dd_core.engine.llm.runtime import Endpoint, LLMRuntime
from dd_core.engine.llm.structured_check import CheckOutcome, models_to_check, refused_modes
from dd_core.errors import DDConfigError, ModelEndpointError
from dd_core.log import get_logger
from dd_core.redaction import scrub

log = get_logger(__name__)

PROBE_TIMEOUT_S = 10.0
#: The command that starts dd's local test server (named in the fix for a loopback base_url).
TEST_SERVER = "python -m dd_core.testing.llm_server"


class ProbeFailure(Exception):
    """Why a model's endpoint failed its check (``cause``) and what to do (``fix``)."""

    def __init__(self, cause: str, fix: str):
        super().__init__(cause)
        self.cause = scrub(cause)
        self.fix = fix


@dataclass(frozen=True)
class Target:
    """One model as the probe sees it: its settings, where it is served, where its key comes from."""

    model: ModelConfig
    endpoint: Endpoint
    #: Where the key comes from ("$OPENAI_API_KEY"); None when no key is sent.
    key_place: str | None


class ProbeHTTP:
    """One request of a probe; whatever stops it from getting an answer is a ``ProbeFailure``."""

    def __init__(self, session: aiohttp.ClientSession, target: Target):
        self.session = session
        self.target = target

    async def send(
        self, method: str, path: str, headers: dict[str, str], timeout_s: float, body: Any = None
    ) -> tuple[int, bytes]:
        """``path`` below base_url, or a whole URL (a provider's own URL scheme)."""
        url = path if "://" in path else self.target.endpoint.base_url.rstrip("/") + path
        data = None if body is None else orjson.dumps(body)
        if data is not None:
            headers = {**headers, "Content-Type": "application/json"}
        connect_s = min(self.target.model.connect_timeout_s, timeout_s)
        timeout = aiohttp.ClientTimeout(total=timeout_s, sock_connect=connect_s)
        try:
            async with self.session.request(method, url, data=data, headers=headers, timeout=timeout) as response:
                try:
                    return response.status, await read_body(response)
                except MalformedReply:
                    return response.status, b""
        except aiohttp.ConnectionTimeoutError as exc:
            raise no_connection(self.target.endpoint.base_url, connect_s) from exc
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise no_answer(exc, self.target.endpoint.base_url, timeout_s) from exc

    async def read(self, path: str, headers: dict[str, str]) -> tuple[int, bytes]:
        """A GET with the probe's own timeout (or the model's shorter ``timeout_s``)."""
        return await self.send("GET", path, headers, min(PROBE_TIMEOUT_S, self.target.endpoint.timeout_s))


def _where(base_url: str) -> tuple[str, int, str]:
    """(host, port, "host:port") of ``base_url``."""
    parts = urlsplit(base_url)
    host, port = parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)
    return host, port, f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def no_connection(base_url: str, connect_s: float) -> ProbeFailure:
    """No connection within the model's ``connect_timeout_s``: a host that is down, or a firewall."""
    return ProbeFailure(
        f"cannot be reached: no connection within {connect_s:g} s (connect_timeout_s)",
        f"Check that the model server at {_where(base_url)[2]} is up and reachable from this machine "
        "(a firewall that drops connections looks like this).",
    )


def no_answer(exc: BaseException, base_url: str, timeout_s: float) -> ProbeFailure:
    """The cause and fix of a request that got no answer, whatever the provider."""
    host, port, where = _where(base_url)
    reason = _reason(exc)
    if isinstance(exc, TimeoutError):
        return ProbeFailure(
            f"cannot be reached: no answer within {timeout_s:g} s",
            f"Check that the model server at {where} is up and reachable from this machine "
            "(a firewall that drops connections looks like this).",
        )
    if isinstance(exc, aiohttp.ClientConnectorCertificateError) or _is(exc, ssl.SSLCertVerificationError):
        return ProbeFailure(
            f"cannot be reached: its TLS certificate is not trusted ({reason})",
            "If the server's certificate comes from your own CA, point SSL_CERT_FILE at that CA's certificate "
            "file; if the name in base_url differs from the certificate's, use the certificate's name.",
        )
    if isinstance(exc, aiohttp.ClientSSLError) or _is(exc, ssl.SSLError):
        return ProbeFailure(
            f"cannot be reached: the TLS handshake failed ({reason})",
            "If the server speaks plain HTTP, write base_url with http:// instead of https://.",
        )
    os_error = getattr(exc, "os_error", exc)
    if isinstance(os_error, socket.gaierror):
        return ProbeFailure(
            f"cannot be reached: the host name '{host}' cannot be resolved ({reason})",
            "Check the host name in the model's base_url (and this machine's network and DNS).",
        )
    if isinstance(os_error, ConnectionRefusedError):
        return ProbeFailure(
            f"cannot be reached: connection refused (nothing is listening on {where})", _start_server(host, port, where)
        )
    if isinstance(exc, aiohttp.ClientConnectorError):
        return ProbeFailure(
            f"cannot be reached: no connection to {where} ({reason})",
            "Check the host and port in the model's base_url, and that the server runs there.",
        )
    return ProbeFailure(
        f"cannot be reached: the connection failed without an answer ({reason})",
        "Check the scheme and port in the model's base_url (https:// for a server that speaks TLS).",
    )


def _is(exc: BaseException, kind: type[BaseException]) -> bool:
    return isinstance(exc, kind) or isinstance(getattr(exc, "os_error", None), kind)


def _reason(exc: BaseException) -> str:
    certificate = getattr(exc, "certificate_error", None)
    if isinstance(certificate, ssl.SSLCertVerificationError):
        return certificate.verify_message or certificate.reason or str(certificate)
    os_error = getattr(exc, "os_error", None)
    if isinstance(os_error, ssl.SSLError):
        return os_error.reason or str(os_error)
    if isinstance(os_error, OSError) and os_error.strerror:
        return os_error.strerror
    return str(exc)[:200] or type(exc).__name__


def _start_server(host: str, port: int, where: str) -> str:
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        return f"Start the model server on {where}, or point the model's base_url at one that runs."
    host_option = "" if host in ("127.0.0.1", "localhost") else f" --host {host}"
    return (
        f"Start the model server on port {port}; to try dd without one, start its local test server: "
        f"{TEST_SERVER} --port {port}{host_option}"
    )


def refused(status: int, body: bytes, target: Target) -> ProbeFailure:
    """A 401 or 403: the key (or its lack) is the problem."""
    place = target.key_place
    said = f"HTTP {status}: {error_message(body)[:200]}"
    if place is None:
        return ProbeFailure(
            f"wants an API key ({said})",
            "Export the key in an environment variable and name that variable in the model's api_key_env.",
        )
    cause = f"refused the API key from {place} ({said})"
    if status == 403:
        return ProbeFailure(
            cause, f"Put a key with access to model '{target.model.model}' in {place}, or ask for that access."
        )
    return ProbeFailure(cause, f"Put a key this server accepts in {place}.")


def not_found(body: bytes, target: Target, listed: list[str]) -> ProbeFailure:
    """A 404 from the chat endpoint: no such model, or no API at that path."""
    served = f" (it lists {', '.join(listed[:10])}{', ...' if len(listed) > 10 else ''})" if listed else ""
    return ProbeFailure(
        f"answered HTTP 404 for model '{target.model.model}' ({error_message(body)[:200]})",
        f"Set the model's `model` to one the server serves{served}, or check that base_url ends where "
        "its API starts (e.g. http://host:8000/v1).",
    )


# --- the cheapest request of each provider --------------------------------------------------


async def probe_openai(http: ProbeHTTP, target: Target) -> None:
    endpoint = target.endpoint
    headers = {"Authorization": f"Bearer {endpoint.api_key}"} if endpoint.api_key else {}
    status, body = await http.read("/models", headers)
    listed = _listed_models(body) if status == 200 else []
    if status == 200 and target.model.model in listed:
        return
    if status in (401, 403):
        raise refused(status, body, target)
    if status not in (200, 404, 405):
        return  # a server that is there (busy, failing): the run's retries decide
    ping = {"model": target.model.model, "messages": [{"role": "user", "content": "ping"}], "max_tokens": 1}
    status, body = await http.send("POST", "/chat/completions", headers, endpoint.timeout_s, ping)
    if status in (401, 403):
        raise refused(status, body, target)
    if status == 404:
        raise not_found(body, target, listed)


async def probe_azure(http: ProbeHTTP, target: Target) -> None:
    """The resource's model list: it proves the resource answers and takes the key. Azure offers
    no cheaper read of a deployment than a completion, so a missing deployment is found by the
    first call (a 404, failing its cells without retries)."""
    endpoint = target.endpoint
    url = f"{azure.resource_url(endpoint)}/openai/models?api-version={quote(target.model.api_version or '', safe='')}"
    status, body = await http.read(url, azure.auth_headers(endpoint))
    if status in (401, 403):
        raise refused(status, body, target)
    if status == 404:
        raise ProbeFailure(
            f"answered HTTP 404 for its model list ({error_message(body)[:200]})",
            "Set base_url to the resource's endpoint (https://NAME.openai.azure.com) and api_version to one "
            "the resource serves (e.g. 2024-10-21).",
        )


async def probe_anthropic(http: ProbeHTTP, target: Target) -> None:
    """``GET /v1/models/{model}``: the key, and the model (an alias or an id), for free."""
    endpoint = target.endpoint
    url = f"{anthropic_messages.api_root(endpoint)}/v1/models/{quote(target.model.model, safe='')}"
    status, body = await http.read(url, anthropic_messages.auth_headers(endpoint))
    if status in (401, 403):
        raise refused(status, body, target)
    if status == 404:
        raise not_found(body, target, [])


def _listed_models(body: bytes) -> list[str]:
    try:
        data = parse_json(body).get("data")
        return [str(item["id"]) for item in data if isinstance(item, dict) and "id" in item]
    except (MalformedReply, AttributeError, TypeError):
        return []


Probe = Callable[[ProbeHTTP, Target], Awaitable[None]]
#: The probe of each provider.
PROBES: dict[str, Probe] = {"openai": probe_openai, "azure": probe_azure, "anthropic": probe_anthropic}


# --- every model of a run -------------------------------------------------------------------


def reach_models(config: DatasetConfig, runtime: LLMRuntime, *, check_structured: bool = True) -> dict[str, Spend]:
    """Probe every model an LLM column of ``config`` uses; ``ModelEndpointError`` names each
    one that failed. Then, with ``check_structured`` (a caller that holds finished row groups of
    this config knows the answer), check that each server takes the way its model asks for JSON;
    a ``DDConfigError`` names each one that does not. Resolves the endpoints first (a missing URL
    or key is a config error). Returns, per model alias, what the check's requests were billed for
    (for the caller to count in the dataset's spend)."""
    aliases = sorted({c.model for c in config.columns if isinstance(c, LLMColumn)})
    if not aliases:
        return {}
    targets = [_target(config.model(alias), runtime) for alias in aliases]
    asking = {model.alias for model in models_to_check(config)} if check_structured else set()
    failures, checked = asyncio.run(_check_all(targets, asking))
    if failures:
        raise ModelEndpointError(_message(failures))
    if checked.issues:
        raise DDConfigError(checked.issues)
    return checked.spend


def _target(model: ModelConfig, runtime: LLMRuntime) -> Target:
    endpoint = runtime.endpoint(model)
    override = runtime.overrides.get(model.alias)
    if endpoint.api_key is None:
        place = None
    elif override is not None and override.api_key is not None:
        place = f"the api_key passed for model '{model.alias}' (e.g. in the Dagster resource)"
    else:
        place = f"${model.api_key_env}"
    return Target(model, endpoint, place)


async def _check_all(targets: list[Target], asking: set[str]) -> tuple[list[tuple[Target, ProbeFailure]], CheckOutcome]:
    """The probes' failures; when there are none, the structured-output check of the models in ``asking``."""
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session:
        failures = await _probe_all(session, targets)
        if failures or not asking:
            return failures, CheckOutcome()
        checked = [(t.model, t.endpoint, shown_url(t)) for t in targets if t.model.alias in asking]
        return [], await refused_modes(session, checked)


async def _probe_all(session: aiohttp.ClientSession, targets: list[Target]) -> list[tuple[Target, ProbeFailure]]:
    # One probe per distinct (provider, URL, key, model name); its verdict holds for each alias.
    unique: dict[tuple, Target] = {}
    for target in targets:
        unique.setdefault(_same_probe(target), target)
    verdicts = await asyncio.gather(*(_probe_one(session, t) for t in unique.values()))
    by_key = dict(zip(unique, verdicts))
    return [(t, by_key[_same_probe(t)]) for t in targets if by_key[_same_probe(t)] is not None]


def _same_probe(target: Target) -> tuple:
    return (target.model.provider, target.endpoint.base_url, target.endpoint.api_key, target.model.model)


async def _probe_one(session: aiohttp.ClientSession, target: Target) -> ProbeFailure | None:
    try:
        await PROBES[target.model.provider](ProbeHTTP(session, target), target)
    except ProbeFailure as failure:
        return failure
    log.debug("model %s (%s) at %s answered its probe", target.model.alias, target.model.model, shown_url(target))
    return None


def shown_url(target: Target) -> str:
    """base_url without a user, password, query or fragment (places a secret may hide)."""
    parts = urlsplit(target.endpoint.base_url)
    netloc = parts.hostname or ""
    if ":" in netloc:
        netloc = f"[{netloc}]"
    if parts.port:
        netloc += f":{parts.port}"
    return scrub(f"{parts.scheme}://{netloc}{parts.path}")


def _message(failures: list[tuple[Target, ProbeFailure]]) -> str:
    """One line per (base_url, cause, fix), naming every alias it concerns."""
    groups: dict[tuple[str, str, str], list[Target]] = {}
    for target, failure in failures:
        groups.setdefault((shown_url(target), failure.cause, failure.fix), []).append(target)
    lines = []
    for (url, cause, fix), targets in groups.items():
        names = " and ".join(f"'{t.model.alias}' ({t.model.model})" for t in targets)
        who = f"model {names}" if len(targets) == 1 else f"models {names}"
        lines.append(f"{who}: the server at {url} {cause}. Nothing was written. {fix}")
    if len(lines) == 1:
        return lines[0]
    return f"{len(lines)} model endpoints failed their check:\n" + "\n".join(f"  - {line}" for line in lines)
