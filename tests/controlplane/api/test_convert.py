"""Conversions between domain records and protos that servers rely on."""

from __future__ import annotations

from controlplane.api import convert
from controlplane.api.pb import errors_pb
from controlplane.domain.model import Failure


def test_error_reason_numbers_of_known_and_unknown_names() -> None:
    assert convert.error_reason_number("ERROR_REASON_RATE_LIMITED") == errors_pb.ERROR_REASON_RATE_LIMITED
    assert convert.error_reason_number("ERROR_REASON_AGENT_FAILED") == errors_pb.ERROR_REASON_AGENT_FAILED
    assert convert.error_reason_number("ERROR_REASON_NO_SUCH_THING") == 0
    assert convert.error_reason_number("") == 0


def test_a_failure_keeps_its_reason_and_an_unknown_reason_becomes_unspecified() -> None:
    known = convert.failure_to_pb(Failure("ERROR_REASON_AGENT_FAILED", "boom", "s1", "ValueError"))
    assert (known.reason, known.message, known.subtask, known.error_type) == (
        errors_pb.ERROR_REASON_AGENT_FAILED,
        "boom",
        "s1",
        "ValueError",
    )
    assert convert.failure_to_pb(Failure("a plugin's own reason", "x", "", "")).reason == 0
    assert convert.failure_to_pb(None) is None
