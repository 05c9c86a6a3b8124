"""Before any work, every model a run will call is reached once: a server that is down, a wrong
URL, a TLS failure, a refused key or an unknown model is one message at once (exit 7) naming the
model, its base_url, the cause and the fix, and nothing is written. Real servers throughout: the
test server (with and without TLS), a port where nothing listens, a socket that never answers,
and a network namespace with no DNS."""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from dd_core import GenerationError, ModelEndpointError, ModelOverride, generate, resume_dataset
from dd_core.testing.llm_server import OpenAIServer
from tests.hostile.harness import snapshot
from tests.support import EXAMPLES, run_dd

KEY_ENV = "DD_PROBE_TEST_KEY"
KEY = "sk-probe-test-0123456789"
TEST_SERVER = "python -m dd_core.testing.llm_server --port"


def llm_config(folder: Path, base_url: str, **model) -> Path:
    config = {
        "name": "probed",
        "models": [{"alias": "writer", "model": "test-model", "base_url": base_url, **model}],
        "columns": [
            {"name": "topic", "type": "category", "values": ["cats", "tea"]},
            {"name": "question", "type": "llm_text", "model": "writer", "prompt": "Ask about {{ topic }}."},
        ],
    }
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "probed.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture
def dead_port():
    """A port bound on 127.0.0.1 where nothing listens: connecting is refused (and the port stays ours)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


@pytest.fixture(scope="module")
def server():
    with OpenAIServer() as srv:
        yield srv


@pytest.fixture
def llm(server):
    server.reset_for_next_test()
    yield server
    server.clear_faults()


def failed_at_once(run: subprocess.CompletedProcess, *words: str) -> str:
    """Exit 7, one message on stderr holding every word, no retry logged, no traceback."""
    assert run.returncode == 7, run.stdout + run.stderr
    lines = run.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), run.stderr
    assert "retry" not in run.stderr and "Traceback" not in run.stderr
    for word in words:
        assert word in lines[0], (word, lines[0])
    return lines[0]


def test_nothing_listening_fails_preview_and_generate_at_once_and_writes_nothing(tmp_path, dead_port):
    url = f"http://127.0.0.1:{dead_port}/v1"
    config = llm_config(tmp_path, url)
    words = ("model 'writer' (test-model)", url, "connection refused", f"{TEST_SERVER} {dead_port}")
    failed_at_once(run_dd("preview", config, "-n", 3), *words)
    failed_at_once(run_dd("generate", config, "-n", 4, "--artifact-path", tmp_path / "artifacts"), *words)
    assert not (tmp_path / "artifacts").exists()


def test_resume_with_nothing_listening_changes_nothing(tmp_path, llm, dead_port):
    config = llm_config(tmp_path, llm.base_url)
    generate(config, 2, buffer_size=2, artifact_path=tmp_path, dataset_name="ds")  # row group 0
    llm.set_faults([{"kind": "status", "status": 400}])
    with pytest.raises(GenerationError):  # row group 1 fails: the dataset is unfinished
        generate(config, 4, buffer_size=2, artifact_path=tmp_path, dataset_name="ds")
    llm.clear_faults()
    before = snapshot(tmp_path / "ds")
    dead = {"writer": ModelOverride(base_url=f"http://127.0.0.1:{dead_port}/v1")}
    with pytest.raises(ModelEndpointError, match="connection refused"):
        resume_dataset(tmp_path / "ds", model_overrides=dead)
    assert snapshot(tmp_path / "ds") == before
    assert resume_dataset(tmp_path / "ds").num_records == 4  # with the server back, it finishes


def test_a_finished_dataset_needs_no_server(tmp_path, llm, dead_port):
    config = llm_config(tmp_path, llm.base_url)
    done = generate(config, 2, buffer_size=2, artifact_path=tmp_path, dataset_name="ds")
    dead = {"writer": ModelOverride(base_url=f"http://127.0.0.1:{dead_port}/v1")}
    assert resume_dataset(done.path, model_overrides=dead).already_complete


def test_a_refused_key_names_its_variable(tmp_path):
    with OpenAIServer(api_key=KEY) as keyed:
        config = llm_config(tmp_path, keyed.base_url, api_key_env=KEY_ENV)
        message = failed_at_once(
            run_dd("preview", config, env={KEY_ENV: "sk-wrong-key-0000"}),
            "model 'writer' (test-model)",
            keyed.base_url,
            f"refused the API key from ${KEY_ENV} (HTTP 401: Incorrect API key provided.)",
            f"Put a key this server accepts in ${KEY_ENV}.",
        )
        assert "sk-wrong-key-0000" not in message
        no_key = llm_config(tmp_path / "no-key", keyed.base_url)
        failed_at_once(run_dd("preview", no_key), "wants an API key (HTTP 401", "api_key_env")
        assert run_dd("preview", config, "-n", 2, env={KEY_ENV: KEY}).returncode == 0


@pytest.mark.parametrize(
    ("status", "words"),
    [
        (403, ["refused the API key", "HTTP 403", "with access to model 'other-model'"]),
        (404, ["answered HTTP 404 for model 'other-model'", "(it lists test-model)", "ends where its API starts"]),
    ],
)
def test_a_model_the_server_refuses(tmp_path, llm, status, words):
    """The server's list lacks the model, so one chat completion settles it: here refused."""
    llm.set_faults([{"kind": "status", "status": status, "model": "other-model"}])
    config = llm_config(tmp_path, llm.base_url, model="other-model", api_key_env=KEY_ENV)
    failed_at_once(run_dd("preview", config, env={KEY_ENV: KEY}), "model 'writer' (other-model)", *words)
    assert llm.stats()["requests_total"] == 1  # the probe's one completion, then nothing


def test_a_model_the_server_serves_without_listing_it_costs_one_token(tmp_path, llm):
    """llama-server answers whatever model is named: the probe's completion asks for one token."""
    config = llm_config(tmp_path, llm.base_url, model="any-name")
    run = run_dd("preview", config, "-n", 3)
    assert run.returncode == 0, run.stderr
    stats = llm.stats()
    assert stats["requests_total"] == 4 and stats["succeeded"] == 4  # the probe and three cells


def test_a_base_url_that_is_not_the_api(tmp_path, llm):
    root = llm.base_url.removesuffix("/v1")
    failed_at_once(run_dd("preview", llm_config(tmp_path, root)), "answered HTTP 404", "ends where its API starts")


def test_https_to_a_plain_http_server(tmp_path, llm):
    url = llm.base_url.replace("http://", "https://")
    failed_at_once(run_dd("preview", llm_config(tmp_path, url)), url, "the TLS handshake failed", "http://")


def test_an_untrusted_certificate_and_the_fix(tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert, "-days", "2"]
        + ["-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True,
        capture_output=True,
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    with OpenAIServer(ssl_context=context) as tls:
        config = llm_config(tmp_path, tls.base_url)
        failed_at_once(
            run_dd("preview", config),
            tls.base_url,
            "TLS certificate is not trusted (self-signed certificate)",
            "SSL_CERT_FILE",
        )
        trusted = run_dd("preview", config, "-n", 2, env={"SSL_CERT_FILE": str(cert)})  # the fix it names
        assert trusted.returncode == 0, trusted.stderr


def test_a_server_that_never_answers(tmp_path):
    with socket.socket() as silent:  # the kernel accepts connections into the backlog; nobody reads them
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/v1"
        failed_at_once(run_dd("preview", llm_config(tmp_path, url, timeout_s=0.5)), url, "no answer within 0.5 s")


def in_network_namespace(*args: object) -> subprocess.CompletedProcess:
    """``ddsynth ARGS`` in a new network namespace: loopback only, no DNS server, nothing listening."""
    unshare = ["unshare", "--net"] if os.geteuid() == 0 else ["unshare", "--map-root-user", "--net"]
    script = 'ip link set lo up && exec "$@"'
    command = [*unshare, "sh", "-c", script, "sh", sys.executable, "-m", "dd_core", *map(str, args)]
    assert shutil.which("unshare") and shutil.which("ip"), "util-linux's unshare and iproute2's ip are needed"
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def test_an_unknown_host(tmp_path):
    url = "http://models.example.invalid:8000/v1"
    failed_at_once(in_network_namespace("preview", llm_config(tmp_path, url)), url, "cannot be resolved", "host name")


def test_the_llm_example_with_nothing_listening_names_the_test_server(tmp_path):
    """The acceptance case, on the example file as it is: nothing listens on 127.0.0.1:8000 in a
    fresh network namespace."""
    example = EXAMPLES / "support_tickets_llm.yaml"
    words = ("model 'writer' (test-model)", "http://127.0.0.1:8000/v1", "connection refused", f"{TEST_SERVER} 8000")
    failed_at_once(in_network_namespace("preview", example, "-n", 3), *words)
    out = tmp_path / "artifacts"
    failed_at_once(in_network_namespace("generate", example, "-n", 10, "--artifact-path", out), *words)
    assert not out.exists()


@pytest.mark.parametrize(
    ("provider", "settings"),
    [("azure", {"api_version": "2024-10-21"}), ("anthropic", {"max_tokens": 64})],
)
def test_azure_and_anthropic_are_probed_in_their_own_protocol_without_a_completion(tmp_path, provider, settings):
    """Each provider's own free read (Azure's model list, Anthropic's model lookup) with its own key
    header: a refused key is exit 7 naming the variable, and the probe costs no completion."""
    with OpenAIServer(api_key=KEY) as keyed:
        root = keyed.base_url.removesuffix("/v1")
        config = llm_config(tmp_path, root, provider=provider, api_key_env=KEY_ENV, **settings)
        failed_at_once(
            run_dd("preview", config, env={KEY_ENV: "sk-wrong-key-0000"}),
            "model 'writer' (test-model)",
            f"refused the API key from ${KEY_ENV} (HTTP 401",
        )
        assert keyed.stats()["requests_total"] == 0
        run = run_dd("preview", config, "-n", 2, env={KEY_ENV: KEY})
        assert run.returncode == 0, run.stderr
        assert keyed.stats()["requests_total"] == 2  # the two rows' completions, no probe among them
