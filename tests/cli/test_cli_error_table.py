"""The CLI's exit codes for domain errors raised locally come from the SDK's one status table."""

from __future__ import annotations

import click
import pytest

from controlplane import errors
from controlplane.api.errors import status_code_for
from maos_cli._errors import CliError, exit_code_for, handle_errors

DOMAIN_ERRORS = [
    errors.InvalidArgument("bad", field="x"),
    errors.NotFound("gone"),
    errors.AlreadyExists("taken"),
    errors.FailedPrecondition("not now"),
    errors.Aborted("conflict"),
    errors.ResourceExhausted("too many"),
    errors.Unauthenticated("who?"),
    errors.CredentialRefused("revoked"),
    errors.PermissionDenied("no"),
    errors.Unavailable("down"),
]


@pytest.mark.parametrize("exc", DOMAIN_ERRORS, ids=lambda e: type(e).__name__)
def test_a_local_domain_error_exits_as_the_server_would_answer_it(exc: errors.MaosError) -> None:
    @handle_errors
    def command() -> None:
        raise exc

    with pytest.raises(click.ClickException) as raised:
        command()
    assert isinstance(raised.value, CliError)
    # The same exit code as the status the server maps this error to.
    assert raised.value.exit_code == exit_code_for(status_code_for(exc))
