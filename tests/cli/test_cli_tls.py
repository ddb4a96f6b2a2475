"""``maos`` against TLS and mutual-TLS control planes: options, environment, config.yml, errors."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agent_sdk.builtin import EchoAgent
from agent_sdk.tls import tls_credentials
from agent_sdk.worker import Worker
from controlplane.app import App
from maos_cli._errors import EXIT_INVALID_ARGUMENT, EXIT_UNAVAILABLE, EXIT_USAGE
from tests.cli.conftest import Maos
from tests.harness.certs import Pki
from tests.harness.server import free_port, make_settings, start_app


async def serve_with_agent(home: Path, pki: Pki, mutual: bool) -> AsyncIterator[Maos]:
    app: App = await start_app(make_settings(home, **pki.server_settings(mutual=mutual)))
    client = {"cert": pki.client.cert, "key": pki.client.key} if mutual else {}
    worker = Worker(
        EchoAgent(),
        f"127.0.0.1:{app.port}",
        credentials=tls_credentials(ca=pki.ca, **client),
        max_backoff=0.5,
    )
    runner = asyncio.get_running_loop().create_task(worker.run())
    try:
        await asyncio.wait_for(worker.registered.wait(), 15)
        yield Maos(f"127.0.0.1:{app.port}", home)
    finally:
        await worker.shutdown(grace=1.0)
        await asyncio.wait_for(runner, 15)
        await app.stop(grace=1.0)


@pytest.fixture
async def tls_maos(maos_home: Path, pki: Pki) -> AsyncIterator[Maos]:
    """The CLI bound to a TLS control plane with one echo agent (connected over TLS)."""
    async for maos in serve_with_agent(maos_home, pki, mutual=False):
        yield maos


@pytest.fixture
async def mtls_maos(maos_home: Path, pki: Pki) -> AsyncIterator[Maos]:
    """The CLI bound to a control plane requiring client certificates."""
    async for maos in serve_with_agent(maos_home, pki, mutual=True):
        yield maos


async def test_status_and_submit_with_the_ca(tls_maos: Maos, pki: Pki) -> None:
    result = await tls_maos("--tls-ca", str(pki.ca), "status")
    assert result.exit_code == 0, result.output
    assert "1 connected" in result.stdout
    result = await tls_maos("--tls-ca", str(pki.ca), "task", "submit", "--wait", "hello over TLS")
    assert result.exit_code == 0, result.output


async def test_without_the_ca_the_server_is_unavailable(tls_maos: Maos) -> None:
    result = await tls_maos("status")
    assert result.exit_code == EXIT_UNAVAILABLE
    assert "cannot reach the MAOS control plane" in result.stderr
    assert "if it serves TLS give --tls-ca" in result.stderr


async def test_a_ca_that_did_not_sign_the_server_is_refused(tls_maos: Maos, pki: Pki) -> None:
    result = await tls_maos("--tls-ca", str(pki.other_ca), "status")
    assert result.exit_code == EXIT_UNAVAILABLE
    assert "the TLS handshake failed" in result.stderr


async def test_ca_from_the_environment_and_from_config_yml(tls_maos: Maos, pki: Pki) -> None:
    assert (await tls_maos("status", MAOS_TLS_CA=str(pki.ca))).exit_code == 0
    assert (await tls_maos("status", MAOS_CLIENT_TLS_CA_FILE=str(pki.ca))).exit_code == 0
    tls_maos.home.mkdir(parents=True, exist_ok=True)
    (tls_maos.home / "config.yml").write_text(f"client:\n  tls:\n    ca_file: '{pki.ca}'\n")
    result = await tls_maos("status")
    assert result.exit_code == 0, result.output
    result = await tls_maos("--tls-ca", str(pki.other_ca), "status")  # the option wins over config.yml
    assert result.exit_code == EXIT_UNAVAILABLE


async def test_bad_tls_files_are_usage_errors(offline_maos: Maos, pki: Pki, tmp_path: Path) -> None:
    missing = tmp_path / "missing.pem"
    result = await offline_maos("--tls-ca", str(missing), "status")
    assert result.exit_code == EXIT_USAGE
    assert f"TLS: CA certificate file {missing}: No such file or directory" in result.stderr

    junk = tmp_path / "junk.pem"
    junk.write_text("hello\n")
    result = await offline_maos("--tls-ca", str(junk), "task", "list")
    assert result.exit_code == EXIT_USAGE
    assert f"CA certificate file {junk} is not PEM" in result.stderr

    result = await offline_maos("--tls-ca", str(pki.ca), "--tls-cert", str(pki.client.cert), "status")
    assert result.exit_code == EXIT_USAGE
    assert f"client certificate {pki.client.cert} needs its private key file too" in result.stderr

    result = await offline_maos(
        "--tls-cert", str(pki.client.cert), "--tls-key", str(pki.server.key), "status"
    )
    assert result.exit_code == EXIT_USAGE
    assert "does not belong to the certificate" in result.stderr


async def test_no_tls_conflicts_with_tls_files(offline_maos: Maos, pki: Pki) -> None:
    result = await offline_maos("--no-tls", "--tls-ca", str(pki.ca), "status")
    assert result.exit_code == EXIT_USAGE
    assert "--no-tls cannot be combined with --tls-ca" in result.stderr


async def test_a_broken_config_yml_is_reported_not_ignored(offline_maos: Maos) -> None:
    offline_maos.home.mkdir(parents=True)
    (offline_maos.home / "config.yml").write_text("client:\n  tls:\n    enabled: maybe\n")
    result = await offline_maos("status")
    assert result.exit_code == EXIT_INVALID_ARGUMENT
    assert "client.tls.enabled" in result.stderr


async def test_mutual_tls_needs_a_client_certificate(mtls_maos: Maos, pki: Pki) -> None:
    result = await mtls_maos(*pki.client_args(mutual=True), "status")
    assert result.exit_code == 0, result.output

    result = await mtls_maos("--tls-ca", str(pki.ca), "status")
    assert result.exit_code == EXIT_UNAVAILABLE
    assert "under mutual TLS --tls-cert and --tls-key" in result.stderr

    result = await mtls_maos(
        "--tls-ca",
        str(pki.ca),
        "--tls-cert",
        str(pki.stranger.cert),
        "--tls-key",
        str(pki.stranger.key),
        "status",
    )
    assert result.exit_code == EXIT_UNAVAILABLE


async def test_client_certificate_from_config_yml(mtls_maos: Maos, pki: Pki) -> None:
    mtls_maos.home.mkdir(parents=True, exist_ok=True)
    (mtls_maos.home / "config.yml").write_text(
        f"client:\n  tls:\n    ca_file: '{pki.ca}'\n    cert_file: '{pki.client.cert}'\n"
        f"    key_file: '{pki.client.key}'\n"
    )
    result = await mtls_maos("task", "submit", "--wait", "from config")
    assert result.exit_code == 0, result.output


def maos_process(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAOS_")}
    env.update(
        {
            "MAOS_HOME": str(home),
            "MAOS_SERVER_METRICS_PORT": "0",
            "MAOS_SERVER_HTTP_PORT": "0",
            "MAOS_SERVER_DASHBOARD_PORT": "0",
            "NO_COLOR": "1",
        }
    )
    return subprocess.run(
        [sys.executable, "-m", "maos_cli.main", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
        check=False,
    )


@pytest.mark.slow
def test_daemon_with_mutual_tls_and_launched_agents(tmp_path: Path, pki: Pki) -> None:
    """`maos start --daemon` on a mutual-TLS port: its launched agent and the CLI use client.tls.*."""
    home = tmp_path / "home"
    assert maos_process(home, "init").returncode == 0
    (home / "config.yml").write_text(
        f"server:\n  tls:\n    cert_file: '{pki.server.cert}'\n    key_file: '{pki.server.key}'\n"
        f"    client_ca_file: '{pki.ca}'\n    require_client_auth: true\n"
        f"client:\n  tls:\n    ca_file: '{pki.ca}'\n    cert_file: '{pki.client.cert}'\n"
        f"    key_file: '{pki.client.key}'\n"
    )
    address = f"127.0.0.1:{free_port()}"
    started = maos_process(
        home, "-o", "json", "start", "--daemon", "--address", address, "--agents", "echo=1"
    )
    assert started.returncode == 0, started.stderr
    try:
        submitted = maos_process(home, "--addr", address, "task", "submit", "--wait", "via daemon")
        assert submitted.returncode == 0, submitted.stderr  # the launched agent did it
        assert "via daemon" in submitted.stdout
        plaintext = maos_process(home, "--addr", address, "--no-tls", "status")
        assert plaintext.returncode == EXIT_UNAVAILABLE, plaintext.stderr
    finally:
        stopped = maos_process(home, "stop")
        assert stopped.returncode == 0, stopped.stderr
