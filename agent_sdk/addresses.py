"""Control-plane addresses: one ``host:port``, a comma-separated list, or a ``dns:///`` name.

A client (``Client``, ``Worker``, ``maos``, ``maos-agent``) given several
addresses, ``"10.0.0.1:7100,10.0.0.2:7100"``, opens one gRPC channel over all
of them with the ``pick_first`` policy: it connects to the first address that
answers and, when that connection dies, to the next live one, by itself. Calls
in flight on the dead connection fail with UNAVAILABLE; the client's retry
policy retries the idempotent ones (reads, and writes deduplicated by their
``request_id``), a worker re-opens its stream and resumes its session.

Host names in a list are resolved once, when the channel is made; a
``dns:///name:port`` target is left to gRPC's DNS resolver, which tries every
address of the name and re-resolves when connections fail. Under TLS every
address must present a certificate for the first address's host (or for
``tls_server_name``), as the channel checks one name.

Usage::

    addresses = parse_addresses("127.0.0.1:7100,127.0.0.1:7101")   # ("127.0.0.1:7100", "127.0.0.1:7101")
    channel = open_channel(addresses, options=CHANNEL_OPTIONS)
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Sequence
from typing import Any

import grpc

from maos_common.tls import server_name_options

__all__ = ["AddressError", "channel_target", "open_channel", "parse_addresses"]

_SCHEMES = ("dns:", "ipv4:", "ipv6:", "unix:", "unix-abstract:")


class AddressError(ValueError):
    """A control-plane address list that cannot be used; the message names the entry at fault."""


def _split(entry: str) -> tuple[str, str]:
    """``(host, port)`` of ``host:port`` or ``[v6]:port``."""
    if entry.startswith("["):
        host, sep, rest = entry[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise AddressError(f"address {entry!r}: an IPv6 address is written [address]:port")
        return host, rest[1:]
    host, sep, port = entry.rpartition(":")
    if not sep:
        raise AddressError(f"address {entry!r} has no port; write host:port (for example 127.0.0.1:7100)")
    if ":" in host:
        raise AddressError(f"address {entry!r}: an IPv6 address is written [address]:port")
    return host, port


def _check(entry: str) -> str:
    host, port = _split(entry)
    if not host:
        raise AddressError(f"address {entry!r} has no host; write host:port")
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise AddressError(f"address {entry!r}: the port must be a number from 1 to 65535, not {port!r}")
    return entry


def parse_addresses(value: str | Sequence[str]) -> tuple[str, ...]:
    """The addresses of ``value`` (a comma-separated string or a sequence), checked.

    Each entry is ``host:port``, ``[ipv6]:port``, or one gRPC target with a scheme
    (``dns:///name:port``, ``unix:path``), which must then stand alone.

    Raises:
        AddressError: the list or an entry is empty, a port is not 1..65535, or a
            scheme target is combined with other addresses.
    """
    parts = value.split(",") if isinstance(value, str) else value
    entries = [str(e).strip() for e in parts]
    if not entries or entries == [""]:
        raise AddressError("no control-plane address given; write host:port, or several separated by commas")
    for position, entry in enumerate(entries, 1):
        if not entry:
            raise AddressError(f"address list {','.join(entries)!r}: entry {position} is empty")
    schemed = [e for e in entries if e.startswith(_SCHEMES)]
    if schemed:
        if len(entries) > 1:
            raise AddressError(
                f"{schemed[0]!r} is a gRPC target of its own and cannot be listed with "
                "other addresses; give a dns:/// name alone, or host:port entries "
                "separated by commas"
            )
        return (entries[0],)
    return tuple(_check(e) for e in entries)


def _resolved(entry: str) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    host, port = _split(entry)
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise AddressError(f"address {entry!r}: cannot resolve {host!r} ({exc.strerror})") from None
    found = [ipaddress.ip_address(info[4][0]) for info in infos]
    ipv4 = [ip for ip in found if ip.version == 4]
    return list(dict.fromkeys(ipv4 or found))


def channel_target(addresses: Sequence[str]) -> str:
    """The gRPC target of checked ``addresses``: itself for one, an ``ipv4:``/``ipv6:`` list for several.

    Raises:
        AddressError: a host name does not resolve, or the list mixes IPv4 and IPv6 hosts.
    """
    if len(addresses) == 1:
        return addresses[0]
    resolved = [(ip, _split(entry)[1]) for entry in addresses for ip in _resolved(entry)]
    versions = {ip.version for ip, _ in resolved}
    if len(versions) > 1:
        raise AddressError(
            f"addresses {','.join(addresses)!r} mix IPv4 and IPv6 hosts; one channel "
            "takes one family, list the replicas' addresses of one family"
        )
    if versions == {4}:
        return "ipv4:" + ",".join(f"{ip}:{port}" for ip, port in dict.fromkeys(resolved))
    return "ipv6:" + ",".join(f"[{ip}]:{port}" for ip, port in dict.fromkeys(resolved))


def open_channel(
    addresses: Sequence[str],
    *,
    options: Sequence[tuple[str, Any]] = (),
    credentials: grpc.ChannelCredentials | None = None,
    tls_server_name: str | None = None,
) -> grpc.aio.Channel:
    """An aio channel over ``addresses`` (checked, see :func:`parse_addresses`), plaintext or TLS."""
    target = channel_target(addresses)
    extra: list[tuple[str, Any]] = []
    if len(addresses) > 1:
        # The authority (and the name TLS checks) is the first address's, not the ipv4:/ipv6: list's.
        extra.append(("grpc.default_authority", addresses[0]))
        if credentials and not tls_server_name:
            tls_server_name = _split(addresses[0])[0]
    if credentials:
        return grpc.aio.secure_channel(
            target, credentials, options=[*options, *extra, *server_name_options(tls_server_name)]
        )
    return grpc.aio.insecure_channel(target, options=[*options, *extra])
