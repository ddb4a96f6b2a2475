"""Reports carried to the replica holding their task: an agent's result or failure sent to another replica.

An agent may resume its session on replica B while replica A, alive, still holds the task of work
it finished (its stream to A broke, A did not). Its result, sent again to B, is carried to A over
the replicas' bus (:mod:`controlplane.replicas.report_relay`); A applies it as if the agent had sent
it there, fenced by attempt and lease epoch like any report, and its answer (the
:class:`~controlplane.scheduler.commands.Ack`) is the agent's, sent by B. A
:class:`RelayedSession` stands in for the agent on A: it receives that answer, and what the report
would charge to the agent's own record (usage, completed or failed counts) is not written on A,
which no longer has the agent, but told back to B, which has it. When the agent is connected to the
holder itself (it resumed there with its session, :mod:`.session_moves`, and the report comes late from
the replica it left), the holder charges it, and the replica it left writes nothing of the agent.

Only a replica that still holds the task, and may still write (not fenced), applies a carried
report; any other declines it, so the task's real holder, or the replica that takes it over,
answers. A report longer than the bus carries (``redis.max_payload``-sized messages) is not carried:
it is handled as when no replica answers (the agent is told; its work runs again once its lease
lapses, unless the holder is found lost before and the agent's replica claims the task).

This module holds both ends (:class:`CarriedReports`), the stand-in and the JSON form of reports
and answers (the bus carries JSON).
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any

from controlplane.domain.model import AgentInfo, Artifact, Source, ToolCall, Usage
from controlplane.errors import InvalidArgument, Unavailable
from controlplane.scheduler.commands import Ack, Committed, Ref
from controlplane.scheduler.sessions import AgentSession

if TYPE_CHECKING:
    from controlplane.scheduler.agent_side import AgentSide

log = logging.getLogger(__name__)

RESULT, FAILURE = "result", "failure"
#: Seconds a report carried here from another replica waits for its answer (its commit).
RELAYED_ANSWER_WAIT = 30.0

#: Carries one report to the replica holding its task: whether that replica answered it.
Carry = Callable[[], Awaitable[bool]]
#: Charges usage to an agent (``success``: and counts the subtask it settled so):
#: :meth:`~controlplane.scheduler.charges.Charges.charge_agent`.
ChargeAgent = Callable[[AgentSession, Usage, "bool | None"], None]


@dataclass
class RelayedAnswer:
    """What the holder answered a carried report, and what the agent's own replica charges to the agent."""

    ack: Ack
    #: The usage counts against the agent (the holder charged it to the task).
    charged: bool = False
    #: "completed" or "failed" when the report settled its subtask, else "".
    settled: str = ""

    def encode(self) -> dict[str, Any]:
        return {
            "ack": {"accepted": self.ack.accepted, "reason": self.ack.reason, "message": self.ack.message},
            "charged": self.charged,
            "settled": self.settled,
        }

    @classmethod
    def decode(cls, ref: Ref, data: dict[str, Any]) -> RelayedAnswer:
        ack = dict(data.get("ack") or {})
        return cls(
            Ack(ref, bool(ack.get("accepted")), str(ack.get("reason", "")), str(ack.get("message", ""))),
            bool(data.get("charged")),
            str(data.get("settled", "")),
        )


class RelayedSession(AgentSession):
    """An agent connected to another replica, as a report carried here sees it (see the module docstring)."""

    def __init__(self, info: AgentInfo, ref: Ref):
        super().__init__(info)
        self.ref = ref
        self.charged = False
        self.settled = ""
        self.answered: asyncio.Future[Ack] = asyncio.get_running_loop().create_future()

    def charge(self, usage: Usage, success: bool | None) -> None:
        """The report charged ``usage`` to the agent (``success``: and settled its subtask so)."""
        self.charged = True
        if success is not None:
            self.settled = "completed" if success else "failed"

    def send(self, command: Any) -> None:
        """The answer to the report: an Ack, or the Committed message that confirms it."""
        if self.answered.done():
            return
        if isinstance(command, Ack) and command.ref == self.ref:
            self.answered.set_result(command)
        elif isinstance(command, Committed) and self.ref in command.refs:
            self.answered.set_result(Ack(self.ref, True, message="applied by the replica holding the task"))

    def answer(self, ack: Ack) -> RelayedAnswer:
        return RelayedAnswer(ack, self.charged, self.settled)


class CarriedReports:
    """Both ends of carried reports for one agent side (see the module docstring)."""

    def __init__(self, agent_side: AgentSide, charge_agent: ChargeAgent):
        self.agent_side = agent_side
        self._charge_agent = charge_agent
        #: Asks the live replica holding a report's task to apply it (the report as
        #: :func:`encode_report` made it): its answer (:meth:`RelayedAnswer.encode`), or None when no
        #: live replica holds the task (set by :mod:`controlplane.replicas.report_relay`; None: no bus).
        self.relay: Callable[[dict[str, Any]], Awaitable[dict[str, Any] | None]] | None = None

    def carrier(self, session: AgentSession, ref: Ref, report: ResultReport | FailureReport) -> Carry | None:
        """What carries a report to the replica holding its task (None: nothing can, or it came from there).

        The report is encoded when first carried. One the bus refuses (too long) is not carried again.
        """
        relay = self.relay
        if relay is None or isinstance(session, RelayedSession):
            return None
        encoded: dict[str, Any] | None = None
        refused = False

        async def carry() -> bool:
            nonlocal encoded, refused
            if refused:
                return False
            if encoded is None:
                encoded = encode_report(session.id, ref, report)
            try:
                answered = await relay(encoded)
            except InvalidArgument as exc:  # too long for the bus: handled as if no replica answered
                refused, encoded = True, None
                log.warning(
                    "a report on %s is not carried to the replica holding its task: %s",
                    ref.subtask_name,
                    exc.message,
                )
                return False
            except Exception as exc:  # (its holder stopped answering, the bus is away)
                log.info(
                    "could not carry a report on %s to the replica holding it: %s", ref.subtask_name, exc
                )
                return False
            if answered is None:
                return False
            answer = RelayedAnswer.decode(ref, answered)
            if answer.charged:  # what the holder would have charged to the agent, charged here
                success = {"completed": True, "failed": False}.get(answer.settled)
                self._charge_agent(session, report.usage, success)
            if answer.ack.accepted:
                self.agent_side.committer.after_commit(lambda: session.send(answer.ack))
            else:
                session.send(answer.ack)
            return True

        return carry

    def holds(self, task_id: str) -> bool:
        """Whether this replica holds the task and may still write (not fenced, nor found lost now)."""
        committer = self.agent_side.committer
        if committer.fenced or (committer.before_write is not None and committer.before_write()):
            return False
        return task_id in self.agent_side.tasks

    async def apply(self, body: dict[str, Any]) -> dict[str, Any] | None:
        """Apply a report another replica carried here; None (declined) unless this replica holds its task
        (:meth:`holds`). The answer comes once what it changed is durable.

        Raises:
            InvalidArgument: A malformed report.
            Unavailable: Its answer did not come within :data:`RELAYED_ANSWER_WAIT` (commits failing).
        """
        try:
            agent_id, ref, report = decode_report(body)
        except ValueError as exc:
            raise InvalidArgument(f"a report carried from another replica: {exc}") from None
        if not self.holds(ref.task_id):
            return None
        side = self.agent_side
        session = RelayedSession(stand_in(side.agents.get(agent_id), agent_id), ref)
        if isinstance(report, ResultReport):
            side.report_result(
                session,
                ref,
                report.output,
                report.artifacts,
                report.usage,
                tool_calls=report.tool_calls,
                sources=report.sources,
            )
        else:
            side.report_failure(
                session,
                ref,
                report.message,
                report.retryable,
                report.retry_after,
                report.error_type,
                report.usage,
                budget_exceeded=report.budget_exceeded,
            )
        try:
            ack = await asyncio.wait_for(asyncio.shield(session.answered), RELAYED_ANSWER_WAIT)
        except TimeoutError:
            raise Unavailable(
                f"the report on {ref.subtask_name} was not answered within {RELAYED_ANSWER_WAIT:g} s "
                "by the replica holding its task; the agent sends it again after reconnecting"
            ) from None
        answer = session.answer(ack)
        here = side.sessions.get(agent_id)
        if answer.charged and here is not None:  # the agent moved here with its session: charged here
            self._charge_agent(here, report.usage, {"completed": True, "failed": False}.get(answer.settled))
            answer.charged = False
        return answer.encode()


def stand_in(known: AgentInfo | None, agent_id: str) -> AgentInfo:
    """A copy of what the holder knows of the agent (its own record is the other replica's to write;
    its usage is shared: usage is never changed in place)."""
    if known is None:
        return AgentInfo(id=agent_id, agent_type="")
    return replace(known)


# --- the JSON form of a report -------------------------------------------------------------------


@dataclass
class ResultReport:
    """A result's content."""

    output: str
    artifacts: list[Artifact] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    tool_calls: list[ToolCall] = field(default_factory=list)
    sources: list[Source] = field(default_factory=list)


@dataclass
class FailureReport:
    """A failure's content."""

    message: str
    retryable: bool
    retry_after: float
    error_type: str
    usage: Usage = field(default_factory=Usage)
    budget_exceeded: bool = False


def encode_report(agent_id: str, ref: Ref, report: ResultReport | FailureReport) -> dict[str, Any]:
    """A report as JSON for the bus."""
    body: dict[str, Any] = {
        "agent": agent_id,
        "ref": [ref.task_id, ref.subtask_id, ref.attempt, ref.lease_epoch],
        "usage": asdict(report.usage),
    }
    if isinstance(report, ResultReport):
        body["kind"] = RESULT
        body["output"] = report.output
        body["artifacts"] = [
            {**asdict(a), "content": base64.b64encode(a.content).decode("ascii")} for a in report.artifacts
        ]
        body["tool_calls"] = [asdict(c) for c in report.tool_calls]
        body["sources"] = [asdict(s) for s in report.sources]
    else:
        body["kind"] = FAILURE
        body.update(
            message=report.message,
            retryable=report.retryable,
            retry_after=report.retry_after,
            error_type=report.error_type,
            budget_exceeded=report.budget_exceeded,
        )
    return body


def decode_report(body: dict[str, Any]) -> tuple[str, Ref, ResultReport | FailureReport]:
    """The agent id, ref and content of a report :func:`encode_report` encoded.

    Raises:
        ValueError: A malformed report.
    """
    try:
        task_id, subtask_id, attempt, epoch = body["ref"]
        ref = Ref(str(task_id), str(subtask_id), int(attempt), int(epoch))
        usage = Usage(**dict(body.get("usage") or {}))
        report: ResultReport | FailureReport
        if body["kind"] == RESULT:
            report = ResultReport(
                str(body["output"]),
                [
                    Artifact(**{**a, "content": base64.b64decode(a.get("content", ""))})
                    for a in body.get("artifacts") or ()
                ],
                usage,
                [ToolCall(**c) for c in body.get("tool_calls") or ()],
                [Source(**s) for s in body.get("sources") or ()],
            )
        elif body["kind"] == FAILURE:
            report = FailureReport(
                str(body["message"]),
                bool(body["retryable"]),
                float(body["retry_after"]),
                str(body["error_type"]),
                usage,
                bool(body.get("budget_exceeded")),
            )
        else:
            raise ValueError(f"unknown report kind {body['kind']!r}")
        return str(body["agent"]), ref, report
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"malformed report: {exc}") from exc
