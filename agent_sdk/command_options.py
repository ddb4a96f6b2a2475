"""Click options shared by the two commands, ``maos`` and ``maos-agent``.

Only the commands import this module, so a program that uses the SDK as a library
(:class:`~agent_sdk.Client`, :class:`~agent_sdk.Worker`) never loads click.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import click

from agent_sdk.addresses import AddressError, parse_addresses
from maos_common.tls import ClientTls

__all__ = ["AddressList", "tls_from_options", "tls_options"]

_F = TypeVar("_F", bound=Callable[..., Any])


# click.ParamType is generic only from click 8.4; subscripting it fails on the older ones we accept.
class AddressList(click.ParamType):  # type: ignore[type-arg]
    """A click type for ``--addr``/``--server``: checks the list, gives it back comma-joined."""

    name = "HOST:PORT[,HOST:PORT...]"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        try:
            return ",".join(parse_addresses(value))
        except AddressError as exc:
            self.fail(str(exc), param, ctx)


def tls_options(fn: _F) -> _F:
    """Click options ``--tls/--no-tls``, ``--tls-ca``, ``--tls-cert``, ``--tls-key`` and ``--tls-server-name``.

    Each also reads its ``MAOS_TLS*`` variable; the command gets them as the
    parameters ``tls`` (None when not given), ``tls_ca``, ``tls_cert``,
    ``tls_key`` and ``tls_server_name``, which :func:`tls_from_options` reads.
    """
    options = [
        click.option(
            "--tls/--no-tls",
            "tls",
            envvar="MAOS_TLS",
            default=None,
            show_default=False,
            help="Connect over TLS (implied by the other --tls-* options; without --tls-ca the "
            "system's trusted CAs verify the server), or in plaintext whatever client.tls says. "
            "Default: the client.tls settings.",
        ),
        click.option(
            "--tls-ca",
            envvar="MAOS_TLS_CA",
            default=None,
            metavar="FILE",
            show_default=False,
            help="CA certificates (PEM) that verify the control plane. Default: client.tls.ca_file.",
        ),
        click.option(
            "--tls-cert",
            envvar="MAOS_TLS_CERT",
            default=None,
            metavar="FILE",
            show_default=False,
            help="Client certificate (PEM) for mutual TLS. Default: client.tls.cert_file.",
        ),
        click.option(
            "--tls-key",
            envvar="MAOS_TLS_KEY",
            default=None,
            metavar="FILE",
            show_default=False,
            help="Private key (PEM) of --tls-cert. Default: client.tls.key_file.",
        ),
        click.option(
            "--tls-server-name",
            envvar="MAOS_TLS_SERVER_NAME",
            default=None,
            metavar="NAME",
            show_default=False,
            help="Name the server certificate must carry, if not the host of the control plane's "
            "address. Default: client.tls.server_name.",
        ),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def tls_from_options(params: Mapping[str, Any]) -> ClientTls:
    """The choice the :func:`tls_options` make, before the ``client.tls`` settings fill the gaps.

    ``--no-tls`` (``params["tls"] is False``) means plaintext whatever the settings say;
    combined with a TLS file or name it is a :class:`click.UsageError`.
    """
    tls = ClientTls(
        enabled=bool(params.get("tls")),
        ca_file=params.get("tls_ca") or "",
        cert_file=params.get("tls_cert") or "",
        key_file=params.get("tls_key") or "",
        server_name=params.get("tls_server_name") or "",
    )
    if params.get("tls") is False and tls.on:
        raise click.UsageError(
            "--no-tls cannot be combined with --tls-ca, --tls-cert, --tls-key or --tls-server-name"
        )
    return tls
