"""``agent_sdk.tls``: client credentials from PEM files, and ``maos-agent run`` with TLS options."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from agent_sdk import tls_credentials
from agent_sdk.tls import ClientTls, TlsFileError, read_ca, read_key_pair
from tests.harness.certs import Pki


def test_credentials_for_tls_and_mutual_tls(pki: Pki) -> None:
    assert isinstance(tls_credentials(ca=pki.ca), grpc.ChannelCredentials)
    assert isinstance(
        tls_credentials(ca=str(pki.ca), cert=pki.client.cert, key=pki.client.key), grpc.ChannelCredentials
    )
    assert isinstance(tls_credentials(), grpc.ChannelCredentials)  # the system's trusted CAs
    assert read_ca(pki.ca).startswith(b"-----BEGIN CERTIFICATE-----")
    chain, key = read_key_pair(pki.client.cert, pki.client.key)
    assert chain == pki.client.cert.read_bytes() and key == pki.client.key.read_bytes()


def test_missing_ca_file(tmp_path: Path) -> None:
    with pytest.raises(TlsFileError) as error:
        tls_credentials(ca=tmp_path / "ca.pem")
    assert error.value.message == f"CA certificate file {tmp_path / 'ca.pem'}: No such file or directory"
    assert error.value.path == str(tmp_path / "ca.pem")


def test_unreadable_file(pki: Pki) -> None:
    if os.geteuid() == 0:
        # root reads any file regardless of its mode; a directory is unreadable as a file for everyone
        with pytest.raises(TlsFileError, match="Is a directory"):
            tls_credentials(ca=pki.ca.parent)
        return
    pki.ca.chmod(0)
    with pytest.raises(TlsFileError, match="Permission denied"):
        tls_credentials(ca=pki.ca)


def test_files_that_are_not_pem(pki: Pki, tmp_path: Path) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_bytes(b"\x00\x01binary")
    with pytest.raises(TlsFileError, match=r"CA certificate file .*junk.pem is not PEM"):
        tls_credentials(ca=junk)
    with pytest.raises(
        TlsFileError,
        match=r"private key file .*ca.pem is not PEM \(it has no '-----BEGIN \.\.\. "
        r"PRIVATE KEY-----' line\)",
    ):
        tls_credentials(cert=pki.client.cert, key=pki.ca)  # a certificate given as the key
    broken = tmp_path / "broken.pem"
    broken.write_text("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    with pytest.raises(TlsFileError, match=r"CA certificate file .*broken.pem holds no valid certificate"):
        tls_credentials(ca=broken)


def test_certificate_and_key_must_come_together_and_match(pki: Pki) -> None:
    with pytest.raises(TlsFileError, match="needs its private key file too"):
        tls_credentials(ca=pki.ca, cert=pki.client.cert)
    with pytest.raises(TlsFileError, match="needs its client certificate file too"):
        tls_credentials(ca=pki.ca, key=pki.client.key)
    with pytest.raises(TlsFileError) as mismatch:
        tls_credentials(cert=pki.client.cert, key=pki.server.key)
    assert mismatch.value.message == (
        f"private key {pki.server.key} does not belong to the certificate in {pki.client.cert}"
    )


def test_encrypted_key_is_refused_without_prompting(pki: Pki, tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    encrypted = tmp_path / "encrypted.key"
    encrypted.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    with pytest.raises(TlsFileError, match="is encrypted; gRPC needs an unencrypted key file"):
        tls_credentials(cert=pki.client.cert, key=encrypted)


def test_client_tls_choice() -> None:
    assert not ClientTls().on and ClientTls().credentials() is None
    assert ClientTls(enabled=True).on and ClientTls(server_name="maos.example.com").on
    flags = ClientTls(ca_file="ca.pem")
    configured = ClientTls(ca_file="other.pem", cert_file="me.pem", key_file="me.key", server_name="maos")
    assert flags.or_else(configured) == ClientTls(False, "ca.pem", "me.pem", "me.key", "maos")
    assert ClientTls().agent_args() == ["--no-tls"]
    assert configured.agent_args() == [
        "--tls",
        "--tls-ca",
        "other.pem",
        "--tls-cert",
        "me.pem",
        "--tls-key",
        "me.key",
        "--tls-server-name",
        "maos",
    ]


def maos_agent(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAOS_")}
    env["MAOS_HOME"] = str(home)
    return subprocess.run(
        [sys.executable, "-m", "agent_sdk.runner", "run", "--type", "echo", "--server", "127.0.0.1:1", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def test_maos_agent_refuses_a_bad_tls_file_with_a_usage_error(tmp_path: Path) -> None:
    missing = tmp_path / "missing-ca.pem"
    result = maos_agent("--tls-ca", str(missing), home=tmp_path / "home")
    assert result.returncode == 2
    assert f"CA certificate file {missing}: No such file or directory" in result.stderr


def test_maos_agent_refuses_no_tls_with_tls_files(pki: Pki, tmp_path: Path) -> None:
    result = maos_agent("--no-tls", "--tls-ca", str(pki.ca), home=tmp_path / "home")
    assert result.returncode == 2
    assert "--no-tls cannot be combined with --tls-ca" in result.stderr


def test_maos_agent_reads_client_tls_from_config(pki: Pki, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "config.yml").write_text(f"client:\n  tls:\n    ca_file: '{tmp_path / 'nope.pem'}'\n")
    result = maos_agent(home=home)  # the configured CA is used, so its absence is reported
    assert result.returncode == 2
    assert f"CA certificate file {tmp_path / 'nope.pem'}: No such file or directory" in result.stderr
