"""Test certificates made at test time with ``cryptography``: a CA, server and client certificates.

:func:`make_pki` writes PEM files into a folder: a CA, a server certificate
for ``localhost`` and ``127.0.0.1`` signed by it, a client certificate
signed by it, and a second CA with its own client certificate (a stranger
the server must refuse). Keys are EC P-256, small and fast to make.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class Pair:
    """A certificate file and its private key file."""

    cert: Path
    key: Path


@dataclass(frozen=True)
class Pki:
    """The files of one test public key infrastructure."""

    ca: Path
    server: Pair
    client: Pair
    other_ca: Path
    stranger: Pair  # a client certificate signed by other_ca

    def server_settings(self, *, mutual: bool = False) -> dict[str, str | bool]:
        """Settings overrides for a control plane serving TLS (mutual TLS: clients need a certificate)."""
        settings: dict[str, str | bool] = {
            "server.tls.cert_file": str(self.server.cert),
            "server.tls.key_file": str(self.server.key),
        }
        if mutual:
            settings.update(
                {"server.tls.client_ca_file": str(self.ca), "server.tls.require_client_auth": True}
            )
        return settings

    def client_args(self, *, mutual: bool = False) -> list[str]:
        """``maos``/``maos-agent`` options that trust the CA (and present the client certificate)."""
        args = ["--tls-ca", str(self.ca)]
        return (
            args + ["--tls-cert", str(self.client.cert), "--tls-key", str(self.client.key)]
            if mutual
            else args
        )


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "MAOS tests"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    path.chmod(0o600)


def _write_cert(cert: x509.Certificate, path: Path) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def make_ca(
    folder: Path, stem: str, common_name: str
) -> tuple[Path, x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A self-signed CA written to ``folder/stem.pem``; returns the path, certificate and key."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    path = folder / f"{stem}.pem"
    _write_cert(cert, path)
    return path, cert, key


def issue(
    folder: Path,
    stem: str,
    common_name: str,
    ca: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    *,
    server: bool,
) -> Pair:
    """A leaf certificate signed by ``ca``: for a server (SAN localhost, 127.0.0.1) or a client."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    names: list[x509.GeneralName] = (
        [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        if server
        else [x509.DNSName(common_name)]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pair = Pair(folder / f"{stem}.pem", folder / f"{stem}.key")
    _write_cert(cert, pair.cert)
    _write_key(key, pair.key)
    return pair


def make_pki(folder: Path) -> Pki:
    """Write a CA, a server and a client certificate, and a stranger CA with its own client, into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    ca_path, ca, ca_key = make_ca(folder, "ca", "MAOS test CA")
    other_path, other, other_key = make_ca(folder, "other-ca", "Another CA")
    return Pki(
        ca=ca_path,
        server=issue(folder, "server", "maos-server", ca, ca_key, server=True),
        client=issue(folder, "client", "alice.example.com", ca, ca_key, server=False),
        other_ca=other_path,
        stranger=issue(folder, "stranger", "mallory.example.com", other, other_key, server=False),
    )
