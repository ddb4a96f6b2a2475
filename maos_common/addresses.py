"""The address a process on this machine dials to reach a local server."""

from __future__ import annotations

#: Hosts a server binds to mean "every interface"; a local client dials the loopback instead.
ANY_HOSTS = frozenset({"0.0.0.0", "[::]", "::", ""})


def local_address(address: str) -> str:
    """The address a process on this machine dials to reach a server bound to ``address``."""
    host, _, port = address.rpartition(":")
    return f"127.0.0.1:{port}" if host in ANY_HOSTS else address
