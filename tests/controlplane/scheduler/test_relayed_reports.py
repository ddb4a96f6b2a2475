"""The JSON form of reports carried between replicas, and the stand-in session that receives the holder's answer."""

from __future__ import annotations

import pytest

from controlplane.domain.model import AgentInfo, Artifact, Source, ToolCall, Usage
from controlplane.scheduler.commands import Ack, Committed, Ref
from controlplane.scheduler.relayed_reports import (
    FailureReport,
    RelayedAnswer,
    RelayedSession,
    ResultReport,
    decode_report,
    encode_report,
    stand_in,
)

REF = Ref("t1", "s0", 2, 7)


def test_a_result_and_a_failure_survive_their_json_form() -> None:
    result = ResultReport(
        "out",
        [Artifact("a.bin", "application/octet-stream", b"\x00\xff", size_bytes=2)],
        Usage(input_tokens=3, cost_micros=9),
        [ToolCall("grep", duration=0.5, summary="found")],
        [Source("https://example.com", "Example")],
    )
    assert decode_report(encode_report("agents/x", REF, result)) == ("agents/x", REF, result)
    failure = FailureReport("broke", True, 1.5, "ToolError", Usage(output_tokens=4), budget_exceeded=True)
    assert decode_report(encode_report("agents/x", REF, failure)) == ("agents/x", REF, failure)


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"agent": "a", "ref": ["t1", "s0", 0], "kind": "result", "output": ""},
        {"agent": "a", "ref": ["t1", "s0", 0, 1], "kind": "vote"},
        {"agent": "a", "ref": ["t1", "s0", 0, 1], "kind": "result", "output": "", "usage": {"tokens": 1}},
        {"agent": "a", "ref": ["t1", "s0", "x", 1], "kind": "failure"},
    ],
)
def test_a_malformed_report_is_refused(body: dict) -> None:
    with pytest.raises(ValueError, match="report"):
        decode_report(body)


async def test_the_stand_in_takes_the_answer_to_its_report_and_what_it_charged() -> None:
    known = AgentInfo(id="agents/x", agent_type="raw", usage=Usage(input_tokens=5))
    info = stand_in(known, "agents/x")
    info.usage = info.usage.plus(Usage(input_tokens=1))
    assert known.usage.input_tokens == 5  # the holder's copy of the agent is not touched
    session = RelayedSession(info, REF)
    session.send(Ack(Ref("t1", "s1", 0, 1), False))  # another report's answer: not this one's
    session.send(Committed([Ref("t9", "s0", 0, 1)]))
    assert not session.answered.done()
    session.charge(Usage(input_tokens=2), True)
    session.send(Committed([REF]))
    answer = session.answer(await session.answered)
    assert answer.ack.accepted and answer.charged and answer.settled == "completed"
    assert RelayedAnswer.decode(REF, answer.encode()) == answer
    refused = RelayedSession(stand_in(None, "agents/y"), REF)
    refused.send(Ack(REF, False, "ERROR_REASON_STALE_ATTEMPT", "attempt 2 is stale"))
    decoded = RelayedAnswer.decode(REF, refused.answer(await refused.answered).encode())
    assert decoded == RelayedAnswer(Ack(REF, False, "ERROR_REASON_STALE_ATTEMPT", "attempt 2 is stale"))
