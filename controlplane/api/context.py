"""Per-call context: who is calling, and from where. Set by the auth interceptor; read by servicers."""

from __future__ import annotations

import contextvars
from typing import Any

#: The principal of the current call, ``users/{user}`` or ``agents/{agent}``.
#: Until access control is configured every caller acts as the local user.
LOCAL_PRINCIPAL = "users/local"
principal_var: contextvars.ContextVar[str] = contextvars.ContextVar("maos_principal", default=LOCAL_PRINCIPAL)


def current_principal() -> str:
    """The principal of the call being handled."""
    return principal_var.get()


#: The authenticated caller (``controlplane.access.manager.Caller``), or None
#: when authentication is off (every caller may do everything).
caller_var: contextvars.ContextVar[object | None] = contextvars.ContextVar("maos_caller", default=None)


def caller_may(permission: str) -> bool:
    """Whether the current caller holds ``permission`` (always true with auth off)."""
    caller = caller_var.get()
    return caller is None or caller.may(permission)  # type: ignore[attr-defined]


def peer_address(peer: str) -> str:
    """The address of a gRPC peer without its port (``ipv4:10.0.0.7:51234`` -> ``ipv4:10.0.0.7``)."""
    if peer.startswith(("ipv4:", "ipv6:")):
        return peer.rpartition(":")[0]
    return peer


#: The HTTP port's client address, sent by the control plane's own HTTP door on its private Unix socket.
HTTP_PEER_METADATA = "x-maos-http-peer"


def caller_peer(context: Any) -> str:
    """The caller's address: the HTTP client's for calls the HTTP port makes over its private Unix socket.

    The header is believed only on the Unix socket (reachable by the server's own user alone);
    on TCP ports the transport's peer is the answer.
    """
    peer = context.peer() or ""
    if peer.startswith("unix:"):
        for key, value in context.invocation_metadata() or ():
            if key == HTTP_PEER_METADATA and isinstance(value, str) and value.startswith(("ipv4:", "ipv6:")):
                return value
    return peer


def bearer_token(metadata: Any) -> str | None:
    """The key of ``authorization: Bearer <key>`` in a call's invocation metadata, if any."""
    for key, value in metadata or ():
        if key == "authorization" and isinstance(value, str) and value.startswith("Bearer "):
            return value[len("Bearer ") :].strip()
    return None
