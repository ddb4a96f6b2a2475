"""TLS and mutual TLS on the gRPC port: settings, credentials that follow the files, the caller's certificate.

With ``server.tls.cert_file`` and ``server.tls.key_file`` the port speaks TLS
only. With ``server.tls.require_client_auth`` (and ``client_ca_file``) every
connection must also present a client certificate that CA signed; gRPC
refuses the others during the handshake, before any RPC.

A verified client certificate authenticates the connection, not the call:
API keys still decide what each call may do (deny by default), and the
certificate's subject is recorded next to the peer address in the audit log
(:func:`client_certificate_subject`).

The files are checked at start (a precise :class:`InvalidArgument` naming
the setting). They are re-read on the first handshake after one of them
changes (size, modification time or inode), so renewed certificates apply to
new connections without a restart; a renewal that does not load (a key that
no longer matches, half-written files) is logged and the previous material
stays in use until the files are fixed.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from typing import Any

import grpc

from controlplane.errors import InvalidArgument
from maos_common.tls import TlsFileError, read_ca, read_key_pair

log = logging.getLogger(__name__)

_SETTINGS = (
    "server.tls.cert_file",
    "server.tls.key_file",
    "server.tls.client_ca_file",
    "server.tls.require_client_auth",
)


@dataclass(frozen=True)
class ServerTls:
    """The TLS files of the gRPC port (checked by :func:`server_tls`)."""

    cert_file: str
    key_file: str
    client_ca_file: str = ""
    require_client_auth: bool = False

    @property
    def files(self) -> dict[str, str]:
        """Each configured file by the setting that names it."""
        pairs = zip(_SETTINGS[:3], (self.cert_file, self.key_file, self.client_ca_file), strict=True)
        return {setting: path for setting, path in pairs if path}


@dataclass(frozen=True)
class _Material:
    chain: bytes
    key: bytes
    client_ca: bytes | None


def _load(tls: ServerTls) -> _Material:
    """Read and check every file; InvalidArgument names the setting of the file at fault."""
    try:
        chain, key = read_key_pair(tls.cert_file, tls.key_file)
        client_ca = read_ca(tls.client_ca_file) if tls.client_ca_file else None
    except TlsFileError as exc:
        setting = next((s for s, path in tls.files.items() if path == exc.path), "server.tls")
        raise InvalidArgument(f"{setting}: {exc.message}", field=setting) from None
    return _Material(chain, key, client_ca)


def server_tls(settings: Any) -> ServerTls | None:
    """The checked TLS settings, or None for a plaintext port.

    Raises InvalidArgument naming the setting when they are inconsistent (a
    certificate without its key, client authentication without a CA) or a
    file is missing, unreadable, not PEM, or the key does not match.
    """
    cert, key = settings["server.tls.cert_file"], settings["server.tls.key_file"]
    client_ca, require = settings["server.tls.client_ca_file"], settings["server.tls.require_client_auth"]
    if not cert and not key:
        if client_ca or require:
            setting = "server.tls.require_client_auth" if require else "server.tls.client_ca_file"
            raise InvalidArgument(
                f"{setting} needs TLS: set server.tls.cert_file and server.tls.key_file too", field=setting
            )
        return None
    if not cert or not key:
        missing = "server.tls.key_file" if cert else "server.tls.cert_file"
        raise InvalidArgument(
            f"{missing} is not set: TLS needs both server.tls.cert_file and server.tls.key_file",
            field=missing,
        )
    if require and not client_ca:
        raise InvalidArgument(
            "server.tls.require_client_auth needs server.tls.client_ca_file: the CA "
            "certificates that verify client certificates",
            field="server.tls.client_ca_file",
        )
    if client_ca and not require:
        raise InvalidArgument(
            "server.tls.client_ca_file is set but server.tls.require_client_auth is false; "
            "client certificates are only checked when required: set require_client_auth "
            "to true, or remove client_ca_file",
            field="server.tls.require_client_auth",
        )
    tls = ServerTls(cert, key, client_ca, require)
    _load(tls)
    return tls


def _stamp(paths: list[str]) -> tuple[Any, ...]:
    stamp: list[Any] = []
    for path in paths:
        try:
            st = os.stat(path)
            stamp.append((st.st_ino, st.st_size, st.st_mtime_ns))
        except OSError as exc:
            stamp.append(exc.errno)
    return tuple(stamp)


class ServerCredentials:
    """gRPC server credentials whose certificates follow the files (checked on each new handshake)."""

    def __init__(self, tls: ServerTls):
        self.tls = tls
        self._paths = list(tls.files.values())
        self._lock = threading.Lock()
        self._stamp = _stamp(self._paths)
        self.reloads = 0
        self._initial = self._configuration(_load(tls))

    def credentials(self) -> grpc.ServerCredentials:
        """Credentials for ``server.add_secure_port``."""
        return grpc.dynamic_ssl_server_credentials(
            self._initial, self._fetch, require_client_authentication=self.tls.require_client_auth
        )

    @staticmethod
    def _configuration(material: _Material) -> grpc.ServerCertificateConfiguration:
        return grpc.ssl_server_certificate_configuration(
            [(material.key, material.chain)], root_certificates=material.client_ca
        )

    def _fetch(self) -> grpc.ServerCertificateConfiguration | None:
        """Called by gRPC (on one of its threads) before each handshake: new material, or None to keep."""
        try:
            with self._lock:
                stamp = _stamp(self._paths)
                if stamp == self._stamp:
                    return None
                self._stamp = stamp
                try:
                    configuration = self._configuration(_load(self.tls))
                except InvalidArgument as exc:
                    log.warning(
                        "TLS files changed but do not load (%s); still serving the previous certificate",
                        exc.message,
                    )
                    return None
                self.reloads += 1
            log.info("TLS files changed: new connections use the reloaded certificate")
            return configuration
        except Exception:  # an exception here would fail the handshake; keep serving instead
            log.exception("checking the TLS files failed; still serving the previous certificate")
            return None


def client_certificate_subject(context: grpc.aio.ServicerContext) -> str:
    """The subject of the verified client certificate of the call (``CN=...,O=...``), or ""."""
    try:
        auth = context.auth_context() or {}
    except Exception:  # noqa: BLE001 - not every context has one (plaintext, in-process)
        return ""
    values = auth.get("x509_subject") or auth.get("x509_common_name") or []
    return values[0].decode("utf-8", "replace") if values else ""
