"""Which URLs a webhook may call: the SSRF policy, checked at creation and again at every delivery.

Only ``http`` and ``https`` URLs, without user info, of bounded length. The
host is resolved and *every* address it resolves to must be public: no
loopback, private (RFC 1918, unique-local), link-local (cloud metadata at
169.254.169.254), carrier-grade NAT, multicast, reserved or unspecified
address, and no IPv4 hidden in an IPv6 address (``::ffff:127.0.0.1``) —
unless ``webhooks.allow_private`` allows them. Checking again at delivery
time, and then connecting to the address that was checked rather than
resolving once more, is what stops DNS rebinding.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from controlplane.errors import InvalidArgument

MAX_URL_LENGTH = 2048
_SCHEMES = {"http": 80, "https": 443}
#: Ranges refused besides what ``ipaddress`` flags as private, loopback, link-local, ...
_EXTRA_BLOCKED = (
    ipaddress.ip_network("100.64.0.0/10"),
    ipaddress.ip_network("192.0.0.0/24"),
    ipaddress.ip_network("198.18.0.0/15"),
)

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class Target:
    """A parsed webhook URL: what to connect to and what to ask for."""

    url: str
    scheme: str
    host: str
    port: int
    path: str  # with the query, as sent in the request line

    @property
    def tls(self) -> bool:
        """Whether the connection uses TLS (https)."""
        return self.scheme == "https"

    @property
    def host_header(self) -> str:
        """The ``Host`` header: the host, and the port when it is not the scheme's default."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == _SCHEMES[self.scheme] else f"{host}:{self.port}"


def parse_url(url: str, field: str = "webhook.url") -> Target:
    """Check the form of a webhook URL (not its addresses).

    Raises:
        InvalidArgument: Naming ``field``: empty, too long, not http(s), no host, user info, a bad port.
    """
    if not url:
        raise InvalidArgument(f"{field} is required (an http or https URL)", field=field)
    if len(url) > MAX_URL_LENGTH:
        raise InvalidArgument(f"{field} is longer than {MAX_URL_LENGTH} characters", field=field)
    if any(c.isspace() or ord(c) < 32 for c in url):
        raise InvalidArgument(f"{field} must not contain spaces or control characters", field=field)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidArgument(f"{field} {url!r} is not a valid URL: {exc}", field=field) from None
    scheme = parts.scheme.lower()
    if scheme not in _SCHEMES:
        raise InvalidArgument(
            f"{field} must be an http or https URL, not {parts.scheme or 'one without a scheme'!r}",
            field=field,
        )
    if not parts.hostname:
        raise InvalidArgument(f"{field} {url!r} has no host", field=field)
    if parts.username is not None or parts.password is not None:
        raise InvalidArgument(
            f"{field} must not carry a user name or password; sign with the secret instead", field=field
        )
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Target(url=url, scheme=scheme, host=parts.hostname, port=port or _SCHEMES[scheme], path=path)


def blocked(address: IpAddress) -> bool:
    """Whether ``address`` is one a webhook may not reach without ``webhooks.allow_private``."""
    if isinstance(address, ipaddress.IPv6Address):
        mapped = address.ipv4_mapped or address.sixtofour
        if mapped is not None:
            return blocked(mapped)
    if (
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
        or not address.is_global
    ):
        return True
    return any(address in net for net in _EXTRA_BLOCKED if net.version == address.version)


async def resolve(target: Target) -> list[IpAddress]:
    """Every address the target's host resolves to (an IP literal resolves to itself).

    Raises:
        OSError: The name does not resolve.
    """
    try:
        return [ipaddress.ip_address(target.host)]
    except ValueError:
        pass
    infos = await asyncio.get_running_loop().getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
    addresses = list(dict.fromkeys(ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos))
    if not addresses:
        raise OSError(f"{target.host} has no address")
    return addresses


def refused(addresses: list[IpAddress], allow_private: bool) -> list[IpAddress]:
    """The addresses among ``addresses`` the policy refuses (none when ``allow_private``)."""
    return [] if allow_private else [a for a in addresses if blocked(a)]


async def check_url(url: str, allow_private: bool, field: str = "webhook.url") -> Target:
    """Check a webhook URL's form and, by resolving it, its addresses (at create and update).

    Raises:
        InvalidArgument: Naming ``field``: a bad URL, a host that does not resolve, or one address refused.
    """
    target = parse_url(url, field)
    try:
        addresses = await resolve(target)
    except OSError as exc:
        raise InvalidArgument(
            f"{field}: the host {target.host!r} does not resolve ({exc})", field=field
        ) from None
    bad = refused(addresses, allow_private)
    if bad:
        raise InvalidArgument(
            f"{field}: {target.host} resolves to {', '.join(map(str, bad))}, a loopback, private, "
            "link-local or reserved address, which webhooks may not call "
            "(set webhooks.allow_private: true to allow it)",
            field=field,
        )
    return target
