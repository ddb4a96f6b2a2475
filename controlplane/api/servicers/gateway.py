"""maos.v1.AgentGateway: one bidirectional stream per agent process.

With access control on, an :class:`~controlplane.api.admission.AgentAdmission`
decides under which identity a Register is accepted (and exchanges join
tokens for credentials) before the engine sees it. A stream the interceptor
let through without a bearer (:data:`~controlplane.api.admission.JOINING`)
is refused UNAUTHENTICATED when no admission is wired: fail closed.

``Register.launch_id`` (an agent the control plane launched itself, marked
managed) is honoured only from the local agents' key (``users/local-agents``),
or when access control is off; from anyone else it is ignored.

Every agent gets an owner at Register (``AgentInfo.owner``): the principal
that spawned a launched agent (:data:`~controlplane.access.manager.CONTROL_PLANE`
for the control plane's own pool), the creator of a joined agent's join token,
or the principal of the API key an agent connected with.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import grpc

from controlplane.access.manager import AGENT_USER, CONTROL_PLANE, Caller
from controlplane.api import convert
from controlplane.api.admission import Admitted, AgentAdmission
from controlplane.api.context import caller_var, current_principal

# The wire shapes of refs and assignments are converted in convert (the size bound is re-exported).
from controlplane.api.convert import MAX_ASSIGNMENT_BYTES as MAX_ASSIGNMENT_BYTES
from controlplane.api.convert import assignment_to_pb, ref_from_pb, ref_to_pb
from controlplane.api.pb import errors_pb, gateway_grpc, gateway_pb, messages_pb
from controlplane.domain.limits import Limits, check_bytes, clip_bytes, map_size, quote, size_of
from controlplane.domain.model import AgentInfo
from controlplane.domain.model_limits import CallOutcome
from controlplane.domain.tasks import valid_type_name
from controlplane.errors import FailedPrecondition, InvalidArgument, Unauthenticated
from controlplane.logbook import LogBook, LogEntry
from controlplane.pacing import Deferred, Pacer
from controlplane.scheduler.commands import (
    Ack,
    Assign,
    CancelWork,
    Committed,
    DrainAgent,
    PauseAgent,
    PermitReply,
    Ref,
    ResumeAgent,
    StateReply,
    VoteOnCandidates,
)
from controlplane.scheduler.engine import Engine
from controlplane.scheduler.sessions import END_OF_STREAM, AgentSession
from controlplane.version import __version__

log = logging.getLogger(__name__)

MAX_CONCURRENCY = 1024
#: An ``Assignments`` message holds at most this many assignments ...
MAX_ASSIGNMENT_BATCH = 256
#: ... and about this many bytes (an assignment larger than that goes alone).
MAX_BATCH_BYTES = 1024 * 1024


def _bad_ref(ref: gateway_pb.AssignmentRef) -> Ack:
    return Ack(
        Ref("", "", ref.attempt, ref.lease_epoch),
        False,
        "ERROR_REASON_INVALID_FIELD",
        f"ref.subtask {quote(ref.subtask)} is not tasks/TASK/subtasks/SUBTASK",
    )


def take_assignments(first: Assign, outbox: asyncio.Queue[Any]) -> tuple[gateway_pb.Assignments, Any]:
    """One message of ``first`` and the assignments queued right behind it.

    The batch ends at the first other command, at :data:`MAX_ASSIGNMENT_BATCH`
    assignments or before :data:`MAX_BATCH_BYTES` bytes, so order is kept and
    no message nears the agent's receive limit.

    Returns:
        The message, and the command that ended the run (to send next, alone), or None.
    """
    messages = [assignment_to_pb(first)]
    size = messages[0].ByteSize()
    while len(messages) < MAX_ASSIGNMENT_BATCH and not outbox.empty():
        command = outbox.get_nowait()
        if not isinstance(command, Assign):
            return gateway_pb.Assignments(assignments=messages), command
        message = assignment_to_pb(command)
        size += message.ByteSize()
        if size > MAX_BATCH_BYTES:
            return gateway_pb.Assignments(assignments=messages), command
        messages.append(message)
    return gateway_pb.Assignments(assignments=messages), None


def command_to_pb(command: Any) -> gateway_pb.ConnectResponse:
    """The wire message of an engine command."""
    if isinstance(command, Assign):
        return gateway_pb.ConnectResponse(assignment=assignment_to_pb(command))
    if isinstance(command, Ack):
        reason = (
            errors_pb.ErrorReason.Value(command.reason)
            if command.reason
            else errors_pb.ERROR_REASON_UNSPECIFIED
        )
        ack = gateway_pb.ReportAck(
            accepted=command.accepted, reason=reason, message=command.message, proposal=command.proposal
        )
        if not command.proposal:
            ack.ref.CopyFrom(ref_to_pb(command.ref))
        return gateway_pb.ConnectResponse(ack=ack)
    if isinstance(command, VoteOnCandidates):
        return gateway_pb.ConnectResponse(
            vote_request=gateway_pb.VoteRequest(
                proposal=command.proposal,
                task=f"tasks/{command.task_id}",
                question=command.question,
                candidates=[
                    messages_pb.Candidate(id=c, agent=f"agents/{a}" if a else "", content=text)
                    for c, a, text in command.candidates
                ],
                round=command.round,
                deadline=convert.timestamp(command.deadline),
                previous_votes=[
                    messages_pb.Vote(
                        voter=f"agents/{v}", candidate_id=c, confidence=conf, rationale=why, abstained=not c
                    )
                    for v, c, conf, why in command.previous_votes
                ],
                context=command.context,
                constraints=command.constraints,
                remaining_budget=messages_pb.Budget(
                    max_total_tokens=command.max_total_tokens, max_cost_micros=command.max_cost_micros
                ),
            )
        )
    if isinstance(command, Committed):
        return gateway_pb.ConnectResponse(
            committed=gateway_pb.Committed(refs=[ref_to_pb(r) for r in command.refs])
        )
    if isinstance(command, StateReply):
        return gateway_pb.ConnectResponse(
            state=gateway_pb.SharedStateResponse(
                request_id=command.request_id,
                found=command.found,
                value=command.value,
                version=command.version,
                error=errors_pb.ErrorReason.Value(command.error)
                if command.error
                else errors_pb.ERROR_REASON_UNSPECIFIED,
                error_message=command.message,
            )
        )
    if isinstance(command, PermitReply):
        return gateway_pb.ConnectResponse(
            permit=gateway_pb.ModelPermit(
                request_id=command.request_id,
                granted=command.granted,
                permit_id=command.permit_id,
                waited=convert.duration(command.waited),
                retry_after=convert.duration(command.retry_after),
                reason=command.reason,
            )
        )
    if isinstance(command, CancelWork):
        return gateway_pb.ConnectResponse(
            cancel=gateway_pb.Cancel(ref=ref_to_pb(command.ref), reason=command.reason)
        )
    if isinstance(command, DrainAgent):
        return gateway_pb.ConnectResponse(
            drain=gateway_pb.Drain(
                grace=convert.duration(command.grace), reason=command.reason, exit=command.exit
            )
        )
    if isinstance(command, PauseAgent):
        return gateway_pb.ConnectResponse(pause=gateway_pb.Pause())
    if isinstance(command, ResumeAgent):
        return gateway_pb.ConnectResponse(resume=gateway_pb.Resume())
    raise TypeError(f"unknown agent command {command!r}")


def _holder(session: AgentSession) -> str:
    """Who holds a session's model permits: this stream of the agent (a resumed stream is another)."""
    return f"{session.id}/{id(session)}"


def result_size(result: gateway_pb.SubtaskResult) -> int:
    """The bytes a result stores: its output, its artifacts (names, types, inline content, uris), its
    tool-call records and sources."""
    size: int = (
        size_of(result.output)
        + sum(
            size_of(a.name) + size_of(a.media_type) + len(a.content) + size_of(a.uri) + size_of(a.sha256)
            for a in result.artifacts
        )
        + sum(c.ByteSize() for c in result.tool_calls)
        + sum(s.ByteSize() for s in result.sources)
    )
    return size


def launch_id_honoured() -> bool:
    """Whether the current caller may claim a launch (access control off, or the local agents' key)."""
    caller = caller_var.get()
    return caller is None or (isinstance(caller, Caller) and caller.principal == f"users/{AGENT_USER}")


def agent_from_register(reg: gateway_pb.Register, peer: str, limits: Limits | None = None) -> AgentInfo:
    """Validate a Register message and make the agent's record (not ``managed``: the caller decides that).

    Everything the agent describes itself with is kept and listed by ``ListAgents`` for as long as its
    record lives, so each field is bounded in bytes (``limits.agent_*``).
    """
    limits = limits or Limits()
    if not valid_type_name(reg.agent_type):
        raise InvalidArgument(
            "register.agent_type must start with a letter and hold only letters, digits, '_' or '-' (max 63)",
            field="register.agent_type",
        )
    if not 1 <= reg.max_concurrency <= MAX_CONCURRENCY:
        raise InvalidArgument(
            f"register.max_concurrency must be between 1 and {MAX_CONCURRENCY}",
            field="register.max_concurrency",
        )
    if len(reg.capabilities) > 256 or any(not c or len(c) > 64 for c in reg.capabilities):
        raise InvalidArgument(
            "register.capabilities: at most 256, each 1-64 characters", field="register.capabilities"
        )
    check_bytes(
        [
            ("register.labels", map_size(reg.labels), limits.agent_labels, "limits.agent_labels_bytes"),
            (
                "register.hostname",
                size_of(reg.hostname),
                limits.agent_hostname,
                "limits.agent_hostname_bytes",
            ),
            ("register.language", size_of(reg.language), limits.agent_field, ""),
            ("register.sdk_version", size_of(reg.sdk_version), limits.agent_field, ""),
            ("register.capabilities", sum(size_of(c) for c in reg.capabilities), 256 * 64, ""),
            ("register.launch_id", size_of(reg.launch_id), limits.agent_field, ""),
            ("register.resume.session_id", size_of(reg.resume.session_id), limits.agent_field, ""),
        ]
    )
    if len(reg.resume.assignments) > MAX_CONCURRENCY:
        raise InvalidArgument(
            f"register.resume.assignments: at most {MAX_CONCURRENCY}", field="register.resume.assignments"
        )
    return AgentInfo(
        id="",
        agent_type=reg.agent_type,
        capabilities=list(reg.capabilities),
        max_concurrency=reg.max_concurrency,
        labels=dict(reg.labels),
        language=reg.language,
        sdk_version=reg.sdk_version,
        hostname=reg.hostname or peer,
        pid=reg.pid,
        # Unknown values (a newer agent) count as unspecified: treated as model-backed.
        backing=reg.backing if reg.backing in (1, 2) else 0,
    )


class GatewayServicer(gateway_grpc.AgentGatewayServicer):
    """Runs agent sessions."""

    def __init__(
        self,
        engine: Engine,
        launcher: Any = None,
        logbook: LogBook | None = None,
        admission: AgentAdmission | None = None,
    ):
        self.engine = engine
        self.launcher = launcher
        self.logbook = logbook
        self.admission = admission
        settings = getattr(engine, "settings", None)
        self.limits = Limits.from_settings(settings) if settings is not None else Limits()
        self._background: set[asyncio.Task[None]] = set()

    async def _first(
        self, requests: AsyncIterator[gateway_pb.ConnectRequest], context: grpc.aio.ServicerContext
    ) -> gateway_pb.ConnectRequest | None:
        """The stream's first message (None if it ended at once).

        A stream without a bearer must bring a Register with a join token within
        ``AgentAdmission.register_timeout`` seconds; otherwise it is UNAUTHENTICATED.
        """
        if not AgentAdmission.joining():
            try:
                return await requests.__anext__()
            except StopAsyncIteration:
                return None
        assert self.admission is not None  # Connect refuses a joining stream without one
        try:
            first = await asyncio.wait_for(requests.__anext__(), self.admission.register_timeout)
        except (StopAsyncIteration, TimeoutError):
            first = None
        if first is None or first.WhichOneof("message") != "register" or not first.register.join_token:
            raise self.admission.unauthenticated(
                context, "no credentials: send 'authorization: Bearer <credential>' or Register.join_token"
            )
        return first

    async def _admit(
        self,
        requests: AsyncIterator[gateway_pb.ConnectRequest],
        context: grpc.aio.ServicerContext,
    ) -> tuple[gateway_pb.Register, AgentInfo, list[Ref], str, Admitted] | None:
        """The stream's Register, its agent, what it resumes, and its admission (None: no message at all)."""
        first = await self._first(requests, context)
        if first is None:
            return None
        if first.WhichOneof("message") != "register":
            raise FailedPrecondition(
                "the first message of a stream must be register", reason="ERROR_REASON_NOT_REGISTERED"
            )
        reg = first.register
        info = agent_from_register(reg, context.peer(), self.limits)
        resume_refs = [r for r in (ref_from_pb(x) for x in reg.resume.assignments) if r is not None]
        resume_id = (
            convert.parse_name(reg.resume.agent, "agents", "register.resume.agent")
            if reg.resume.agent
            else ""
        )
        admitted = Admitted()
        if self.admission is not None:
            admitted = await self.admission.admit(info, reg.join_token, resume_id, context)
            info.id = admitted.agent_id
            if admitted.joined:
                resume_id, resume_refs = "", []  # a joining agent is new: it resumes no one's session
        return reg, info, resume_refs, resume_id, admitted

    async def Connect(
        self, request_iterator: AsyncIterator[gateway_pb.ConnectRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[gateway_pb.ConnectResponse]:
        slot: contextlib.AbstractContextManager[None] = contextlib.nullcontext()
        if AgentAdmission.joining():
            if self.admission is None:  # nothing could check a join token: fail closed
                raise Unauthenticated("no credentials: send 'authorization: Bearer <credential>'")
            slot = self.admission.joining_slot(context)
        with slot:
            admission = await self._admit(request_iterator, context)
        if admission is None:
            return
        reg, info, resume_refs, resume_id, admitted = admission
        launch_id = reg.launch_id if launch_id_honoured() else ""
        info.managed = bool(launch_id)
        info.owner = self._owner(launch_id, admitted)
        if resume_id:  # a session another replica may have made, and the tasks of its running work
            await self.engine.prepare_resume(resume_id, resume_refs, reg.resume.session_id, info)
        session, registration = self.engine.register(info, resume_id, resume_refs, reg.resume.session_id)
        if launch_id and self.launcher is not None:
            self.launcher.registered(launch_id, session.id)
        yield gateway_pb.ConnectResponse(
            registered=gateway_pb.Registered(
                agent=f"agents/{registration.agent_id}",
                session_id=registration.session_id,
                heartbeat_interval=convert.duration(registration.heartbeat_interval),
                idle_heartbeat_interval=convert.duration(registration.idle_heartbeat_interval),
                lease_ttl=convert.duration(registration.lease_ttl),
                credential=admitted.credential,
                resumed=[ref_to_pb(r) for r in registration.resumed],
                revoked=[ref_to_pb(r) for r in registration.revoked],
                server_version=__version__,
                replica=registration.replica,
                accepts_result_batches=True,
                paces_model_calls=self.engine.pacer is not None,
            )
        )
        reader = asyncio.get_running_loop().create_task(self._read(request_iterator, session))
        try:
            outbox = session.outbox
            batching = reg.accepts_assignment_batches
            while True:
                command = await outbox.get()
                if batching and isinstance(command, Assign) and not outbox.empty():
                    batch, command = take_assignments(command, outbox)
                    yield gateway_pb.ConnectResponse(assignments=batch)
                    if command is None:
                        continue
                if command is END_OF_STREAM:
                    break
                yield command_to_pb(command)
        finally:
            reader.cancel()
            self.engine.disconnect(session)
            if self.engine.pacer is not None:
                self.engine.pacer.release_holder(_holder(session))

    def _owner(self, launch_id: str, admitted: Admitted) -> str:
        """Who owns the registering agent: for a launch, whoever spawned it (the control plane for its
        pool); else the principal of its API key or the creator of its join token."""
        if launch_id:
            launch = self.launcher.launches.get(launch_id) if self.launcher is not None else None
            return (launch.owner if launch is not None else "") or CONTROL_PLANE
        if self.admission is None:  # access control off: every caller is the local user
            return current_principal()
        return admitted.owner

    def _own_record(self, entry: LogEntry) -> LogEntry:
        """An agent's log record keeps its task only if the agent works or worked on that task: the task's
        owner reads it (docs/security.md), so no agent may write into another task's log."""
        if entry.task_id and not self.engine.worked_on(entry.agent_id, entry.task_id):
            entry.task_id = entry.subtask_id = ""
        return entry

    def _state(self, session: AgentSession, request: gateway_pb.SharedStateRequest) -> None:
        ref = ref_from_pb(request.ref)
        op = request.WhichOneof("op")
        if ref is None or op is None:
            session.send(
                StateReply(
                    request.request_id,
                    error="ERROR_REASON_INVALID_FIELD",
                    message="a shared-state request needs ref and one of get, put, delete",
                )
            )
            return
        if op == "put":
            body = request.put
            expected = None if body.force else body.expected_version
            coro = self.engine.shared_state(
                session, request.request_id, ref, "put", request.key, body.value, expected
            )
        elif op == "delete":
            expected = None if request.delete.force else request.delete.expected_version
            coro = self.engine.shared_state(
                session, request.request_id, ref, "delete", request.key, b"", expected
            )
        else:
            coro = self.engine.shared_state(session, request.request_id, ref, "get", request.key)
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # --- model pacing ------------------------------------------------------------

    def _permit(self, session: AgentSession, request: gateway_pb.ModelPermitRequest) -> None:
        pacer = self.engine.pacer
        if pacer is None:  # nothing paces: every call may go
            session.send(PermitReply(request.request_id, True, "unpaced"))
            return
        try:  # the fast path answers at once, without a task
            grant = pacer.grant_now(
                request.model, request.input_tokens, request.output_tokens, _holder(session)
            )
        except ValueError as exc:
            session.send(PermitReply(request.request_id, False, reason=f"invalid permit request: {exc}"))
            return
        if grant is not None:
            session.send(PermitReply(request.request_id, True, grant.permit_id))
            return
        task = asyncio.get_running_loop().create_task(self._answer_permit(pacer, session, request))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _answer_permit(
        self, pacer: Pacer, session: AgentSession, request: gateway_pb.ModelPermitRequest
    ) -> None:
        max_wait = convert.seconds(request.max_wait) if request.HasField("max_wait") else 10.0
        try:
            answer = await pacer.acquire(
                request.model,
                request.input_tokens,
                request.output_tokens,
                max_wait=max_wait,
                holder=_holder(session),
            )
        except ValueError as exc:
            session.send(PermitReply(request.request_id, False, reason=f"invalid permit request: {exc}"))
            return
        if isinstance(answer, Deferred):
            session.send(
                PermitReply(request.request_id, False, retry_after=answer.retry_after, reason=answer.reason)
            )
        elif session.closed:  # the agent left while it waited
            pacer.report(answer.permit_id, CallOutcome(abandoned=True))
        else:
            session.send(PermitReply(request.request_id, True, answer.permit_id, answer.waited))

    def _outcome(self, session: AgentSession, outcome: gateway_pb.ModelCallOutcome) -> None:
        pacer = self.engine.pacer
        if pacer is None:
            return
        retry_after = (
            min(max(0.0, convert.seconds(outcome.retry_after)), 3600.0)
            if outcome.HasField("retry_after")
            else None
        )
        pacer.report(
            outcome.permit_id[:64],
            CallOutcome(
                status=outcome.status_code,
                retry_after=retry_after,
                headers=dict(outcome.headers),
                input_tokens=outcome.input_tokens,
                output_tokens=outcome.output_tokens,
                abandoned=outcome.abandoned,
            ),
            model=outcome.model,
            holder=_holder(session),
        )

    def _result(self, session: AgentSession, result: gateway_pb.SubtaskResult) -> None:
        ref = ref_from_pb(result.ref)
        if ref is None:
            session.send(_bad_ref(result.ref))
            return
        size = result_size(result)
        if size > self.limits.result:
            # Stored, a result this large would make its task's reads fail for good (issue 11): the
            # subtask fails instead, saying why, and is not retried (the same work gives the same size).
            self.engine.report_failure(
                session,
                ref,
                f"result rejected: result.output and artifacts are {size} bytes; the limit is "
                f"{self.limits.result} bytes (limits.result_bytes); return large output as an artifact uri",
                False,
                0.0,
                "ResultTooLarge",
                convert.usage_from_pb(result.usage),
            )
            return
        self.engine.report_result(
            session,
            ref,
            result.output,
            [convert.artifact_from_pb(a) for a in result.artifacts],
            convert.usage_from_pb(result.usage),
            tool_calls=convert.tool_calls_from_pb(result.tool_calls),
            sources=convert.sources_from_pb(result.sources),
        )

    async def _read(self, requests: AsyncIterator[gateway_pb.ConnectRequest], session: AgentSession) -> None:
        engine = self.engine
        try:
            async for msg in requests:
                if session.suspect:
                    engine.seen(session)
                kind = msg.WhichOneof("message")
                if kind == "heartbeat":
                    hb = msg.heartbeat
                    running = hb.running
                    engine.heartbeat(
                        session,
                        [r for r in map(ref_from_pb, running) if r] if running else (),
                        hb.draining,
                        hb.free_slots,
                    )
                elif kind == "result":
                    self._result(session, msg.result)
                elif kind == "results":
                    for result in msg.results.results:
                        self._result(session, result)
                elif kind == "failure":
                    ref = ref_from_pb(msg.failure.ref)
                    if ref is None:
                        session.send(_bad_ref(msg.failure.ref))
                        continue
                    f = msg.failure
                    engine.report_failure(
                        session,
                        ref,
                        clip_bytes(f.message, self.limits.report_text),
                        f.retryable,
                        min(max(0.0, convert.seconds(f.retry_after)), 86400.0),
                        clip_bytes(f.error_type, self.limits.agent_field),
                        convert.usage_from_pb(f.usage),
                        budget_exceeded=f.reason == errors_pb.ERROR_REASON_BUDGET_EXCEEDED,
                    )
                elif kind == "progress":
                    ref = ref_from_pb(msg.progress.ref)
                    if ref is not None:
                        p = msg.progress
                        engine.report_progress(
                            session,
                            ref,
                            p.fraction,
                            clip_bytes(p.message, self.limits.progress_message),
                            p.checkpoint if p.HasField("checkpoint") else None,
                        )
                elif kind == "output":
                    ref = ref_from_pb(msg.output.ref)
                    if ref is not None:
                        text = clip_bytes(msg.output.text, self.limits.report_text)
                        engine.report_output(session, ref, text, msg.output.sequence)
                elif kind == "vote":
                    v = msg.vote
                    engine.cast_vote(
                        session,
                        v.proposal,
                        v.candidate_id,
                        v.confidence,
                        clip_bytes(v.rationale, self.limits.report_text),
                        v.round,
                        usage=convert.usage_from_pb(v.usage),
                        abstain=v.abstain,
                    )
                elif kind == "logs":
                    if self.logbook is not None:
                        self.logbook.extend(
                            self._own_record(
                                convert.log_entry_from_pb(r, session.id, self.limits.log_message)
                            )
                            for r in msg.logs.records[:100]
                        )
                elif kind == "state":
                    self._state(session, msg.state)
                elif kind == "permit_request":
                    self._permit(session, msg.permit_request)
                elif kind == "model_outcome":
                    self._outcome(session, msg.model_outcome)
                elif kind == "register":
                    log.warning("agent %s sent register twice; ignored", session.id)
                # logs, votes and shared state are handled by later components
        except asyncio.CancelledError:
            raise
        except grpc.aio.AioRpcError as exc:  # the stream broke (agent gone, network cut)
            log.info("agent %s stream ended: %s", session.id, exc.code().name)
        except Exception:  # a bug: keep the traceback, and end this stream cleanly
            log.exception("agent %s: handling its report failed", session.id)
        finally:
            engine.disconnect(session)
