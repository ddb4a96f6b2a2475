"""Turning failed calls into CLI errors, and the CLI's exit codes.

Exit codes of ``maos`` (stable; scripts may rely on them):

====  ==========================================================================
Code  Meaning
====  ==========================================================================
0     success
1     generic error (UNKNOWN, INTERNAL, UNIMPLEMENTED, CANCELLED, ...; also an
      unhealthy ``maos health`` and a failed ``maos start``/``maos stop``)
2     usage error (bad option or argument, or a TLS file that is missing,
      unreadable or not PEM; raised before any call)
3     NOT_FOUND: no such task, agent or setting
4     INVALID_ARGUMENT / OUT_OF_RANGE: the server rejected a field
5     FAILED_PRECONDITION / ALREADY_EXISTS: the resource's state forbids it
      (for example cancelling a finished task)
6     UNAVAILABLE / ABORTED: the control plane cannot be reached or is busy;
      retrying later may work (also a refused TLS handshake: wrong or
      missing --tls-ca, or no accepted client certificate under mutual TLS)
7     UNAUTHENTICATED / PERMISSION_DENIED: check MAOS_TOKEN and its roles
8     RESOURCE_EXHAUSTED: a limit or rate was hit; the error says when to retry
9     DEADLINE_EXCEEDED, or a ``--timeout`` of the CLI ran out
10    the task finished FAILED or CANCELLED (``task wait``, ``task submit --wait``)
11    a figure crossed ``maos monitor --threshold``
====  ==========================================================================
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click
import grpc

from agent_sdk.errors import MaosRpcError, status_of_error_name

F = TypeVar("F", bound=Callable[..., Any])

EXIT_GENERIC = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_INVALID_ARGUMENT = 4
EXIT_FAILED_PRECONDITION = 5
EXIT_UNAVAILABLE = 6
EXIT_UNAUTHENTICATED = 7
EXIT_RESOURCE_EXHAUSTED = 8
EXIT_TIMEOUT = 9
EXIT_TASK_FAILED = 10
#: A `maos monitor --threshold` was crossed.
EXIT_THRESHOLD = 11
#: Interrupted with Ctrl-C (128 + SIGINT, as shells report it).
EXIT_INTERRUPTED = 130

EXIT_CODES: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.NOT_FOUND: EXIT_NOT_FOUND,
    grpc.StatusCode.INVALID_ARGUMENT: EXIT_INVALID_ARGUMENT,
    grpc.StatusCode.OUT_OF_RANGE: EXIT_INVALID_ARGUMENT,
    grpc.StatusCode.FAILED_PRECONDITION: EXIT_FAILED_PRECONDITION,
    grpc.StatusCode.ALREADY_EXISTS: EXIT_FAILED_PRECONDITION,
    grpc.StatusCode.UNAVAILABLE: EXIT_UNAVAILABLE,
    grpc.StatusCode.ABORTED: EXIT_UNAVAILABLE,
    grpc.StatusCode.UNAUTHENTICATED: EXIT_UNAUTHENTICATED,
    grpc.StatusCode.PERMISSION_DENIED: EXIT_UNAUTHENTICATED,
    grpc.StatusCode.RESOURCE_EXHAUSTED: EXIT_RESOURCE_EXHAUSTED,
    grpc.StatusCode.DEADLINE_EXCEEDED: EXIT_TIMEOUT,
}


class CliError(click.ClickException):
    """A ClickException with its own exit code (the message goes to stderr as ``Error: ...``)."""

    def __init__(self, message: str, exit_code: int = EXIT_GENERIC):
        super().__init__(message)
        # click declares exit_code a ClassVar, but its show()/main read it from the instance.
        self.exit_code = exit_code  # type: ignore[misc]


def exit_code_for(code: grpc.StatusCode) -> int:
    """The exit code of a gRPC status (see the module docstring)."""
    return EXIT_CODES.get(code, EXIT_GENERIC)


def _address() -> str:
    ctx = click.get_current_context(silent=True)
    return getattr(ctx.find_root().obj, "addr", "") if ctx and ctx.find_root().obj else ""


def _tls_hint(detail: str) -> str:
    """What to check when a connection failure looks like TLS trouble."""
    lowered = detail.lower()
    if "handshake" in lowered or "ssl" in lowered or "certificate" in lowered:
        return "\n  the TLS handshake failed: check --tls-ca, --tls-cert, --tls-key and --tls-server-name (client.tls.*)"
    if "socket closed" in lowered:
        return (
            "\n  the server closed the connection: if it serves TLS give --tls-ca, and under mutual TLS "
            "--tls-cert and --tls-key (client.tls.*)"
        )
    return ""


def describe(exc: MaosRpcError) -> str:
    """The message for people: the server's message, its field violations, and a hint."""
    text = exc.message
    if exc.code == grpc.StatusCode.UNAVAILABLE and not exc.reason:
        text = (
            f"cannot reach the MAOS control plane at {_address() or 'the configured address'} "
            f"({exc.message}); is it running? (`maos start`, --addr or MAOS_SERVER_ADDRESS)"
            + _tls_hint(exc.message)
        )
    elif exc.code == grpc.StatusCode.DEADLINE_EXCEEDED:
        text = f"the call timed out ({exc.message}); raise --timeout or check the control plane"
    elif exc.code == grpc.StatusCode.UNAUTHENTICATED:
        from maos_cli._options import credentials_hint

        text += " (set --token or MAOS_TOKEN)" + credentials_hint()
    lines = [text]
    for field, description in exc.field_violations:
        if field in text and description in text:
            continue
        lines.append(f"  field: {field}" if description in text else f"  {field}: {description}")
    if exc.retry_delay:
        lines.append(f"  retry after {exc.retry_delay:g} s")
    return "\n".join(lines)


def handle_errors(fn: F) -> F:
    """Turn client errors into ClickExceptions carrying the exit code of their status.

    Handles :class:`MaosRpcError` (server replies), ``TimeoutError`` (a CLI
    ``--timeout`` ran out) and the control plane's own domain errors raised
    by local commands (a bad config.yml, an unknown agent type).
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except MaosRpcError as exc:
            raise CliError(describe(exc), exit_code_for(exc.code)) from None
        except TimeoutError as exc:
            raise CliError(str(exc) or "timed out", EXIT_TIMEOUT) from None
        except Exception as exc:
            domain = sys.modules.get("controlplane.errors")
            if domain is not None and isinstance(exc, domain.MaosError):
                # The status of the nearest class the SDK's table names (CredentialRefused: Unauthenticated).
                code = next(
                    (c for k in type(exc).__mro__ if (c := status_of_error_name(k.__name__)) is not None),
                    grpc.StatusCode.UNKNOWN,
                )
                violations = [
                    f"  field: {v.field}" if v.description in exc.message else f"  {v.field}: {v.description}"
                    for v in getattr(exc, "violations", [])
                    if not (v.field in exc.message and v.description in exc.message)
                ]
                raise CliError("\n".join([exc.message, *violations]), exit_code_for(code)) from None
            raise

    return wrapper  # type: ignore[return-value]
