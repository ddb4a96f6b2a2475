"""TLS material from PEM files: checked on load, turned into gRPC channel credentials.

Usage::

    credentials = tls_credentials(ca="ca.pem")                                   # TLS
    credentials = tls_credentials(ca="ca.pem", cert="me.pem", key="me.key")      # mutual TLS
    async with Client("maos.example.com:7100", token=key, credentials=credentials) as client: ...

Files are read and checked at once, so a missing, unreadable or malformed
file fails here with a :class:`TlsFileError` naming the file and the problem,
instead of as an opaque handshake failure on the first call. The control
plane checks its own files with the same functions.

Command lines (``maos`` and ``maos-agent``) share the ``--tls*`` click options of
:mod:`agent_sdk.command_options`, which read into a :class:`ClientTls`.
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

__all__ = [
    "ClientTls",
    "TlsFileError",
    "read_ca",
    "read_key_pair",
    "server_name_options",
    "channel_credentials",
]

_CERTIFICATE = b"-----BEGIN CERTIFICATE-----"
_PRIVATE_KEY = b"PRIVATE KEY-----"

StrPath = str | os.PathLike[str]


class TlsFileError(ValueError):
    """A TLS file is missing, unreadable, not PEM, or does not fit with another one.

    Attributes:
        path: The file at fault.
    """

    def __init__(self, message: str, path: StrPath):
        super().__init__(message)
        self.message = message
        self.path = str(path)


def _read(path: StrPath, what: str, marker: bytes, marker_text: str) -> bytes:
    try:
        data = Path(path).expanduser().read_bytes()
    except OSError as exc:
        raise TlsFileError(f"{what} {path}: {exc.strerror or exc}", path) from None
    if marker not in data:
        raise TlsFileError(f"{what} {path} is not PEM (it has no {marker_text} line)", path)
    return data


def _refuse_encrypted(key: StrPath) -> Any:
    def password() -> bytes:
        raise TlsFileError(
            f"private key {key} is encrypted; gRPC needs an unencrypted key file "
            "(protect it with file permissions, mode 0600)",
            key,
        )

    return password


def read_ca(path: StrPath) -> bytes:
    """The PEM bytes of a CA bundle (one or more certificates) that must verify the other side."""
    data = _read(path, "CA certificate file", _CERTIFICATE, "'-----BEGIN CERTIFICATE-----'")
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cadata=data.decode("ascii", "replace"))
    except ssl.SSLError as exc:
        raise TlsFileError(
            f"CA certificate file {path} holds no valid certificate ({exc.reason or exc})", path
        ) from None
    return data


def read_key_pair(cert: StrPath, key: StrPath) -> tuple[bytes, bytes]:
    """The PEM bytes ``(certificate chain, private key)``, checked to belong together."""
    chain = _read(cert, "certificate file", _CERTIFICATE, "'-----BEGIN CERTIFICATE-----'")
    secret = _read(key, "private key file", _PRIVATE_KEY, "'-----BEGIN ... PRIVATE KEY-----'")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        context.load_cert_chain(
            Path(cert).expanduser(), Path(key).expanduser(), password=_refuse_encrypted(key)
        )
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            raise TlsFileError(
                f"private key {key} does not belong to the certificate in {cert}", key
            ) from None
        raise TlsFileError(
            f"cannot load the certificate {cert} with the private key {key}: the certificate "
            f"or the key is malformed ({exc.reason or exc})",
            cert,
        ) from None
    except OSError as exc:  # a file vanished between the two reads
        raise TlsFileError(f"certificate {cert} / private key {key}: {exc.strerror or exc}", cert) from None
    return chain, secret


def channel_credentials(
    ca: StrPath | None = None, cert: StrPath | None = None, key: StrPath | None = None
) -> grpc.ChannelCredentials:
    """Channel credentials for a TLS control plane, from PEM files.

    Args:
        ca: CA certificates that verify the server; None uses the system's trusted roots.
        cert: A client certificate (chain) for mutual TLS; needs ``key``.
        key: The unencrypted private key of ``cert``.

    Raises:
        TlsFileError: A file is missing, unreadable, not PEM, the key does not match the
            certificate, or only one of ``cert`` and ``key`` is given.
    """
    if cert and not key:
        raise TlsFileError(f"client certificate {cert} needs its private key file too", cert)
    if key and not cert:
        raise TlsFileError(f"private key {key} needs its client certificate file too", key)
    root = read_ca(ca) if ca else None
    chain, secret = read_key_pair(cert, key) if cert and key else (None, None)
    return grpc.ssl_channel_credentials(root_certificates=root, private_key=secret, certificate_chain=chain)


def server_name_options(server_name: str | None) -> list[tuple[str, Any]]:
    """Channel options that check the server certificate for ``server_name`` instead of the address's host.

    For a server reached by an address its certificate does not name (an IP,
    or ``127.0.0.1`` for a control plane bound to all interfaces).
    """
    return [("grpc.ssl_target_name_override", server_name)] if server_name else []


@dataclass(frozen=True)
class ClientTls:
    """How a client (the CLI, ``maos-agent``, a launched agent) connects: plaintext, or TLS.

    TLS is on when ``enabled`` is set or any other field is: without
    ``ca_file`` the system's trusted CAs verify the server; ``cert_file`` and
    ``key_file`` add a client certificate (mutual TLS); ``server_name`` is
    the name the server certificate must carry when the address's host is not it.
    """

    enabled: bool = False
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    server_name: str = ""

    @property
    def on(self) -> bool:
        """Whether to connect over TLS."""
        return bool(self.enabled or self.ca_file or self.cert_file or self.key_file or self.server_name)

    def or_else(self, fallback: ClientTls) -> ClientTls:
        """Each field of this one if set, else the fallback's (flags over configuration)."""
        return ClientTls(
            enabled=self.enabled or fallback.enabled,
            ca_file=self.ca_file or fallback.ca_file,
            cert_file=self.cert_file or fallback.cert_file,
            key_file=self.key_file or fallback.key_file,
            server_name=self.server_name or fallback.server_name,
        )

    def credentials(self) -> grpc.ChannelCredentials | None:
        """Channel credentials (None for plaintext); raises :class:`TlsFileError` for an unusable file."""
        if not self.on:
            return None
        return channel_credentials(self.ca_file or None, self.cert_file or None, self.key_file or None)

    def agent_args(self) -> list[str]:
        """The same choice as ``maos-agent run`` options (``--no-tls`` for plaintext)."""
        args = ["--tls"] if self.on else ["--no-tls"]
        for flag, value in (
            ("--tls-ca", self.ca_file),
            ("--tls-cert", self.cert_file),
            ("--tls-key", self.key_file),
            ("--tls-server-name", self.server_name),
        ):
            if value:
                args += [flag, value]
        return args
