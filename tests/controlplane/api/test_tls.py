"""TLS and mutual TLS on the gRPC port: real servers, real handshakes, real agent processes."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from agent_sdk.client import Client
from agent_sdk.errors import UnauthenticatedError, UnavailableError
from agent_sdk.proto.maos.v1 import enums_pb2 as enums
from agent_sdk.tls import tls_credentials
from controlplane.api.server import check_bind_address
from controlplane.api.tls import server_tls
from controlplane.app import App, build_app
from controlplane.errors import InvalidArgument
from tests.harness.certs import Pki, issue, make_ca
from tests.harness.server import admin_key, make_settings, start_app, wait_for, wait_for_agents


@pytest.fixture
async def tls_plane(maos_home: Path, pki: Pki) -> AsyncIterator[App]:
    """A control plane serving TLS (no client certificates)."""
    app = await start_app(make_settings(maos_home, **pki.server_settings()))
    try:
        yield app
    finally:
        await app.stop(grace=1.0)


@pytest.fixture
async def mtls_plane(maos_home: Path, pki: Pki) -> AsyncIterator[App]:
    """A control plane requiring client certificates signed by the test CA."""
    app = await start_app(make_settings(maos_home, **pki.server_settings(mutual=True)))
    try:
        yield app
    finally:
        await app.stop(grace=1.0)


def local(app: App) -> str:
    return f"127.0.0.1:{app.port}"


async def reachable(address: str, credentials: Any) -> bool:
    """Whether a GetStatus call succeeds; False when the connection (the handshake) is refused."""
    async with Client(address, credentials=credentials, timeout=3) as client:
        try:
            await client.status()
        except UnavailableError:
            return False
    return True


# --- TLS --------------------------------------------------------------------------------------


async def test_tls_round_trip_with_an_agent_process(tls_plane: App, pki: Pki, agent_processes: Any) -> None:
    agent_processes(local(tls_plane), "echo", *pki.client_args())
    await wait_for_agents(tls_plane, 1)
    async with Client(local(tls_plane), credentials=tls_credentials(ca=pki.ca), timeout=5) as client:
        task = await client.submit_task(description="say hello over TLS")
        done = await client.wait_task(task.name, timeout=30)
        assert done.status == enums.TASK_STATUS_COMPLETED
        assert "say hello over TLS" in (await client.get_results(task.name)).output


async def test_plaintext_client_against_a_tls_server_is_unavailable(tls_plane: App) -> None:
    async with Client(local(tls_plane), timeout=3) as client:
        with pytest.raises(UnavailableError):
            await client.status()


async def test_client_trusting_another_ca_is_refused(tls_plane: App, pki: Pki) -> None:
    assert not await reachable(local(tls_plane), tls_credentials(ca=pki.other_ca))
    assert await reachable(local(tls_plane), tls_credentials(ca=pki.ca))


async def test_server_name_override_checks_the_certificate_for_that_name(tls_plane: App, pki: Pki) -> None:
    credentials = tls_credentials(ca=pki.ca)
    async with Client(
        local(tls_plane), credentials=credentials, tls_server_name="localhost", timeout=3
    ) as client:
        await client.status()  # the certificate names localhost
    async with Client(
        local(tls_plane), credentials=credentials, tls_server_name="maos.example.com", timeout=3
    ) as client:
        with pytest.raises(UnavailableError):
            await client.status()  # ... but not maos.example.com


# --- mutual TLS -------------------------------------------------------------------------------


async def test_mutual_tls_refuses_a_client_without_a_certificate(mtls_plane: App, pki: Pki) -> None:
    assert not await reachable(local(mtls_plane), tls_credentials(ca=pki.ca))


async def test_mutual_tls_refuses_a_certificate_signed_by_another_ca(mtls_plane: App, pki: Pki) -> None:
    stranger = tls_credentials(ca=pki.ca, cert=pki.stranger.cert, key=pki.stranger.key)
    assert not await reachable(local(mtls_plane), stranger)


async def test_mutual_tls_accepts_a_certificate_signed_by_the_client_ca(mtls_plane: App, pki: Pki) -> None:
    assert await reachable(
        local(mtls_plane), tls_credentials(ca=pki.ca, cert=pki.client.cert, key=pki.client.key)
    )


async def test_mutual_tls_agent_process_completes_work(
    mtls_plane: App, pki: Pki, agent_processes: Any
) -> None:
    agent_processes(local(mtls_plane), "echo", *pki.client_args(mutual=True))
    await wait_for_agents(mtls_plane, 1)
    credentials = tls_credentials(ca=pki.ca, cert=pki.client.cert, key=pki.client.key)
    async with Client(local(mtls_plane), credentials=credentials, timeout=5) as client:
        task = await client.submit_task(description="mutual")
        assert (await client.wait_task(task.name, timeout=30)).status == enums.TASK_STATUS_COMPLETED


async def test_launched_agents_connect_with_the_client_tls_settings(maos_home: Path, pki: Pki) -> None:
    settings = make_settings(
        maos_home,
        **pki.server_settings(mutual=True),
        **{
            "client.tls.ca_file": str(pki.ca),
            "client.tls.cert_file": str(pki.client.cert),
            "client.tls.key_file": str(pki.client.key),
        },
    )
    app = await start_app(settings)
    try:
        launch = await app.launcher.spawn("echo")
        await wait_for(lambda: launch.registered_event.is_set(), 20, message="the launched agent to register")
        credentials = tls_credentials(ca=pki.ca, cert=pki.client.cert, key=pki.client.key)
        async with Client(local(app), credentials=credentials, timeout=5) as client:
            task = await client.submit_task(description="for a launched agent")
            assert (await client.wait_task(task.name, timeout=30)).status == enums.TASK_STATUS_COMPLETED
    finally:
        await app.stop(grace=1.0)


async def test_launching_under_mutual_tls_without_a_client_certificate_fails_precisely(
    maos_home: Path, pki: Pki
) -> None:
    from controlplane.errors import FailedPrecondition

    app = await start_app(
        make_settings(maos_home, **pki.server_settings(mutual=True), **{"client.tls.ca_file": str(pki.ca)})
    )
    try:
        with pytest.raises(FailedPrecondition) as refused:
            await app.launcher.spawn("echo")
        assert "client.tls.cert_file" in refused.value.message
        assert not app.launcher.launches
    finally:
        await app.stop(grace=1.0)


async def test_certificate_subject_is_audited_and_a_key_is_still_required(maos_home: Path, pki: Pki) -> None:
    app = await start_app(
        make_settings(maos_home, **pki.server_settings(mutual=True), **{"security.auth": "required"})
    )
    try:
        credentials = tls_credentials(ca=pki.ca, cert=pki.client.cert, key=pki.client.key)
        async with Client(local(app), credentials=credentials, timeout=5) as anonymous:
            with pytest.raises(UnauthenticatedError):
                await anonymous.status()  # a certificate alone grants nothing
        async with Client(
            local(app), token=await admin_key(app), credentials=credentials, timeout=5
        ) as admin:
            await admin.submit_task(description="audited")
            records = await wait_for(
                lambda: admin.list_audit_records(action="SubmitTask"), message="the audit record"
            )
        record = records[0]
        assert record.principal == "users/admin" and record.status_code == "OK"
        assert record.peer.endswith("(client certificate CN=alice.example.com,O=MAOS tests)")
        assert record.peer.startswith("ipv4:127.0.0.1:")
    finally:
        await app.stop(grace=1.0)


# --- reload -----------------------------------------------------------------------------------


def replace(target: Path, source: Path) -> None:
    """Swap a file for another's content atomically (how certificate renewals are usually written)."""
    temp = target.with_suffix(".new")
    temp.write_bytes(source.read_bytes())
    os.replace(temp, target)


async def test_renewed_server_certificate_applies_to_new_connections(
    tls_plane: App, pki: Pki, tmp_path: Path
) -> None:
    address = local(tls_plane)
    assert await reachable(address, tls_credentials(ca=pki.ca))
    folder = tmp_path / "renewed"
    folder.mkdir()
    new_ca_path, new_ca, new_ca_key = make_ca(folder, "new-ca", "Renewal CA")
    renewed = issue(folder, "server", "maos-server", new_ca, new_ca_key, server=True)

    replace(pki.server.cert, renewed.cert)  # half-way: the old key does not match the new certificate
    assert await reachable(address, tls_credentials(ca=pki.ca)), (
        "a broken renewal must keep the old certificate"
    )
    replace(pki.server.key, renewed.key)
    assert await reachable(address, tls_credentials(ca=new_ca_path))
    assert not await reachable(address, tls_credentials(ca=pki.ca))
    assert tls_plane.credentials is not None and tls_plane.credentials.reloads == 1


# --- binding ----------------------------------------------------------------------------------


async def test_tls_may_bind_beyond_localhost(maos_home: Path, pki: Pki) -> None:
    app = build_app(make_settings(maos_home, **pki.server_settings()))
    try:
        port = await app.start("0.0.0.0:0")
        assert app.launcher.server_address == f"127.0.0.1:{port}"  # launched agents dial the loopback
        assert await reachable(f"127.0.0.1:{port}", tls_credentials(ca=pki.ca))
    finally:
        await app.stop(grace=1.0)


async def test_plaintext_is_refused_beyond_localhost(maos_home: Path) -> None:
    app = build_app(make_settings(maos_home))
    try:
        with pytest.raises(InvalidArgument) as refused:
            await app.start("0.0.0.0:0")
        assert "refusing to serve plaintext gRPC on 0.0.0.0:0" in refused.value.message
    finally:
        await app.stop(grace=1.0)


def test_check_bind_address() -> None:
    check_bind_address("127.0.0.1:7100", allow_insecure_remote=False)
    check_bind_address("0.0.0.0:7100", allow_insecure_remote=False, tls=True)
    check_bind_address("10.1.2.3:7100", allow_insecure_remote=True)
    with pytest.raises(InvalidArgument):
        check_bind_address("[::]:7100", allow_insecure_remote=False, tls=False)
    with pytest.raises(InvalidArgument, match="listens on one address") as listed:
        check_bind_address("127.0.0.1:7100,127.0.0.1:7101", allow_insecure_remote=False)
    assert [v.field for v in listed.value.violations] == ["server.address"]


# --- bad configuration ------------------------------------------------------------------------


def settings_with(home: Path, **tls: Any) -> Any:
    return make_settings(home, **{f"server.tls.{key}": value for key, value in tls.items()})


def refusal(home: Path, **tls: Any) -> InvalidArgument:
    with pytest.raises(InvalidArgument) as refused:
        server_tls(settings_with(home, **tls))
    return refused.value


def test_no_tls_settings_mean_plaintext(maos_home: Path) -> None:
    assert server_tls(settings_with(maos_home)) is None


def test_missing_key_file_fails_naming_setting_and_file(maos_home: Path, pki: Pki, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.key"
    error = refusal(maos_home, cert_file=pki.server.cert, key_file=missing)
    assert error.message == f"server.tls.key_file: private key file {missing}: No such file or directory"
    assert error.violations[0].field == "server.tls.key_file"


def test_build_app_fails_before_touching_the_database(maos_home: Path, pki: Pki, tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="server.tls.cert_file: certificate file .* No such file"):
        build_app(settings_with(maos_home, cert_file=tmp_path / "none.pem", key_file=pki.server.key))
    assert not (maos_home / "maos.db").exists()


def test_require_client_auth_without_a_ca_fails(maos_home: Path, pki: Pki) -> None:
    error = refusal(maos_home, cert_file=pki.server.cert, key_file=pki.server.key, require_client_auth=True)
    assert error.message.startswith("server.tls.require_client_auth needs server.tls.client_ca_file")


def test_client_ca_without_require_client_auth_fails(maos_home: Path, pki: Pki) -> None:
    error = refusal(maos_home, cert_file=pki.server.cert, key_file=pki.server.key, client_ca_file=pki.ca)
    assert "client certificates are only checked when required" in error.message


def test_half_configured_tls_fails(maos_home: Path, pki: Pki) -> None:
    assert refusal(maos_home, cert_file=pki.server.cert).message.startswith("server.tls.key_file is not set")
    assert refusal(maos_home, key_file=pki.server.key).message.startswith("server.tls.cert_file is not set")
    assert refusal(maos_home, require_client_auth=True).message == (
        "server.tls.require_client_auth needs TLS: set server.tls.cert_file and server.tls.key_file too"
    )


def test_files_that_are_not_pem_or_do_not_match_fail(maos_home: Path, pki: Pki, tmp_path: Path) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    assert refusal(maos_home, cert_file=junk, key_file=pki.server.key).message == (
        f"server.tls.cert_file: certificate file {junk} is not PEM (it has no '-----BEGIN CERTIFICATE-----' line)"
    )
    assert refusal(maos_home, cert_file=pki.server.cert, key_file=pki.client.key).message == (
        f"server.tls.key_file: private key {pki.client.key} does not belong to the certificate in {pki.server.cert}"
    )
    error = refusal(
        maos_home,
        cert_file=pki.server.cert,
        key_file=pki.server.key,
        client_ca_file=junk,
        require_client_auth=True,
    )
    assert error.message.startswith(f"server.tls.client_ca_file: CA certificate file {junk} is not PEM")


def test_unreadable_directory_instead_of_a_file_fails(maos_home: Path, pki: Pki, tmp_path: Path) -> None:
    error = refusal(maos_home, cert_file=tmp_path, key_file=pki.server.key)
    assert error.message == f"server.tls.cert_file: certificate file {tmp_path}: Is a directory"


def test_tls_settings_come_from_the_environment(maos_home: Path, pki: Pki) -> None:
    from controlplane.config import load_settings

    settings = load_settings(
        home=maos_home,
        environ={
            "MAOS_SERVER_TLS_CERT_FILE": str(pki.server.cert),
            "MAOS_SERVER_TLS_KEY_FILE": str(pki.server.key),
            "MAOS_SERVER_TLS_CLIENT_CA_FILE": str(pki.ca),
            "MAOS_SERVER_TLS_REQUIRE_CLIENT_AUTH": "true",
        },
    )
    tls = server_tls(settings)
    assert tls is not None and tls.require_client_auth and tls.client_ca_file == str(pki.ca)
