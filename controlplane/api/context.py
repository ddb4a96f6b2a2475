"""Per-call context: who is calling. Set by the auth interceptor; read by servicers."""

from __future__ import annotations

import contextvars

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
