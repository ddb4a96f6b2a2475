"""TLS material from PEM files, turned into gRPC channel credentials (see :mod:`maos_common.tls`).

Usage::

    credentials = tls_credentials(ca="ca.pem")                                   # TLS
    credentials = tls_credentials(ca="ca.pem", cert="me.pem", key="me.key")      # mutual TLS
    async with Client("maos.example.com:7100", token=key, credentials=credentials) as client: ...

The functions live in :mod:`maos_common.tls`, where the control plane reads its own files with
them too; this module is their place in the SDK.
"""

from __future__ import annotations

import grpc

from maos_common.tls import (
    ClientTls,
    StrPath,
    TlsFileError,
    channel_credentials,
    read_ca,
    read_key_pair,
    server_name_options,
)

__all__ = [
    "ClientTls",
    "TlsFileError",
    "read_ca",
    "read_key_pair",
    "server_name_options",
    "tls_credentials",
]


def tls_credentials(
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
    return channel_credentials(ca, cert, key)
