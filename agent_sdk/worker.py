"""The worker: keeps an agent connected to a control plane and runs its assignments.

``Worker.run()`` connects, registers, heartbeats, runs many assignments at
once (up to the agent's max_concurrency), and reconnects with jittered
backoff when the stream breaks, resuming its session so work in flight keeps
its leases. ``Worker.shutdown(grace)`` drains: no new work, running work gets
``grace`` seconds to finish, then it is cancelled (its last checkpoint stays
with the control plane for the next attempt).

Authentication (control planes with ``security.auth: required``): either
``token``, an API key holding ``agent:connect`` or an agent credential, sent
as ``authorization: Bearer`` on every connection; or ``join_token``
(``id.secret``, from ``maos join-token create``), sent in the first Register
without a bearer. The control plane exchanges a valid join token for a
credential of this agent alone (``Registered.credential``); the worker keeps
it in memory (``Worker.credential``) and uses it as the bearer on every
reconnection and resume, so the join token is used once per process and may
expire or be used up afterwards. Credentials last 90 days; the control plane
renews one in ``Registered.credential`` when the worker registers in the last
third of that, and the worker switches to it (from ``token`` too). A refused
token or credential (UNAUTHENTICATED, PERMISSION_DENIED) ends ``run()`` with
that error; RESOURCE_EXHAUSTED (rate limits) is retried with backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import random
import socket
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any, cast

import grpc

from agent_sdk.addresses import open_channel, parse_addresses
from agent_sdk.agent import Agent
from agent_sdk.context import (
    Assignment,
    Ballot,
    Candidate,
    Context,
    Result,
    SharedState,
    StateConflict,
    Usage,
    VoteChoice,
)
from agent_sdk.errors import AgentError, BudgetExhausted, from_rpc_error
from agent_sdk.pacing import ModelPacer, Outcome, PermitAnswer
from agent_sdk.proto.maos.v1 import agent_gateway_pb2 as gw
from agent_sdk.proto.maos.v1 import agent_gateway_pb2_grpc as gw_grpc
from agent_sdk.proto.maos.v1 import enums_pb2 as enums_pb
from agent_sdk.proto.maos.v1 import errors_pb2 as errors_pb
from agent_sdk.proto.maos.v1 import messages_pb2 as msgs
from agent_sdk.wire import assignment_from_pb, optional_seconds
from agent_sdk.wire import seconds as _seconds

log = logging.getLogger(__name__)

#: Keepalive settings every MAOS agent uses (the server accepts pings every 10 s or slower).
KEEPALIVE_OPTIONS = [
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
]
#: The agent stream's options: keepalive, and the control plane's 16 MiB message limit both ways.
CHANNEL_OPTIONS = [
    *KEEPALIVE_OPTIONS,
    ("grpc.max_receive_message_length", 16 * 1024 * 1024),
    ("grpc.max_send_message_length", 16 * 1024 * 1024),
]
SDK_VERSION = "0.1.0"
#: Heartbeats fall on a grid of this many slots per interval on the wall clock, so that the beats of
#: many agents reach the control plane together and it handles each wake-up's worth at once (a lone
#: message costs it several times more than one among many).
HEARTBEAT_SLOTS = 10
_CLOSE = object()
#: A ``SubtaskResults`` message holds at most this many results ...
MAX_RESULT_BATCH = 256
#: ... and about this many bytes (a result larger than that goes alone).
MAX_RESULT_BATCH_BYTES = 1024 * 1024


def _take_results(first: gw.ConnectRequest, outbox: asyncio.Queue[Any]) -> tuple[gw.ConnectRequest, Any]:
    """One ``SubtaskResults`` message of ``first`` and the results queued right behind it.

    The batch ends at the first other item, at :data:`MAX_RESULT_BATCH` results
    or before :data:`MAX_RESULT_BATCH_BYTES` bytes.

    Returns:
        The message, and the item that ended the run (to send next, alone), or None.
    """
    results = [first.result]
    size = first.result.ByteSize()
    while len(results) < MAX_RESULT_BATCH and not outbox.empty():
        item = outbox.get_nowait()
        if item is _CLOSE or item.WhichOneof("message") != "result":
            break
        size += item.result.ByteSize()
        if size > MAX_RESULT_BATCH_BYTES:
            break
        results.append(item.result)
    else:
        item = None
    return gw.ConnectRequest(results=gw.SubtaskResults(results=results)), item


_UINT32 = 2**32 - 1


class Worker:
    """Runs one agent against one control plane.

    For a TLS control plane pass ``credentials=tls_credentials(ca=..., cert=..., key=...)``
    (:mod:`agent_sdk.tls`), and ``tls_server_name`` when the server certificate does not name
    the host of ``server``.

    Args:
        agent: What runs the assignments.
        server: The control plane, ``host:port``, or several to fail over between (comma-separated or a
            sequence), or a ``dns:///`` target; see :mod:`agent_sdk.addresses`.
        token: API key or agent credential (``authorization: Bearer``).
        join_token: A join token to exchange for a credential at the first Register
            (see the module docstring); sent until a credential is received, and
            ignored by the control plane when ``token`` is given too.
    """

    def __init__(
        self,
        agent: Agent,
        server: str | Sequence[str],
        *,
        token: str | None = None,
        join_token: str | None = None,
        capabilities: list[str] | None = None,
        max_concurrency: int | None = None,
        labels: dict[str, str] | None = None,
        launch_id: str = "",
        credentials: grpc.ChannelCredentials | None = None,
        tls_server_name: str | None = None,
        reconnect: bool = True,
        max_backoff: float = 10.0,
    ):
        self.agent = agent
        self._addresses = parse_addresses(server)
        self.server = ",".join(self._addresses)
        self.token = token
        self.join_token = join_token
        #: The credential the control plane issued for ``join_token`` (empty until then).
        self.credential = ""
        self.capabilities = list(capabilities if capabilities is not None else agent.capabilities)
        self.max_concurrency = max_concurrency or agent.max_concurrency
        self.labels = labels or {}
        self.launch_id = launch_id
        self.credentials = credentials
        self.tls_server_name = tls_server_name
        self.reconnect = reconnect
        self.max_backoff = max_backoff
        self.agent_name = ""
        self.session_id = ""
        self.registered = asyncio.Event()
        self._running: dict[str, tuple[asyncio.Task[None], gw.AssignmentRef]] = {}
        self._unacked: dict[str, gw.ConnectRequest] = {}
        #: Assignments the control plane cancelled (their spent usage is still reported).
        self._stopped: set[str] = set()
        self._outbox: asyncio.Queue[Any] | None = None
        self._stop = asyncio.Event()
        self._draining = False
        self._exit_after_drain = False
        self._heartbeat_interval = 5.0
        #: How far apart heartbeats may be while the agent is idle (Registered.idle_heartbeat_interval).
        self._idle_heartbeat_interval = 5.0
        self._result_batches = False  # whether the control plane takes SubtaskResults (per stream)
        self._background: set[asyncio.Task[Any]] = set()
        self._state_waiters: dict[int, asyncio.Future[gw.SharedStateResponse]] = {}
        self._state_seq = 0
        self._permit_waiters: dict[int, asyncio.Future[gw.ModelPermit]] = {}
        self._permit_seq = 0
        self._paced = False  # whether the control plane answers permit requests (per stream)
        #: Permits for the agent's model calls, over the stream; also set as ``agent.pacer``.
        self.pacer = ModelPacer(self._ask_permit, self._send_outcome)
        agent.pacer = self.pacer
        self._log_handler = _ForwardingHandler(self)
        self.completed = 0

    # --- public ---------------------------------------------------------------

    async def run(self) -> None:
        """Connect and work until shut down (or until the server drains with exit).

        Raises:
            MaosRpcError: The server refused the agent (INVALID_ARGUMENT, UNAUTHENTICATED or
                PERMISSION_DENIED: a bad registration or credential); other stream failures reconnect.

        The agent's :meth:`~agent_sdk.Agent.warm_up` runs first, so its start-up costs are paid before it
        registers; a failing warm-up is logged and the agent still runs (its work reports the problem).
        """
        try:
            await self.agent.warm_up()
        except Exception:  # noqa: BLE001 - the first assignment reports what is wrong, with its context
            log.exception("warming up the %s agent failed", self.agent.agent_type)
        try:
            await self._run()
        finally:
            try:
                await self.agent.close()
            except Exception:  # noqa: BLE001 - closing must not hide how the run ended
                log.exception("closing the %s agent failed", self.agent.agent_type)

    async def _run(self) -> None:
        attempt = 0
        while not self._stop.is_set():
            try:
                await self._session()
                attempt = 0
            except grpc.aio.AioRpcError as exc:
                if exc.code() in (
                    grpc.StatusCode.INVALID_ARGUMENT,
                    grpc.StatusCode.UNAUTHENTICATED,
                    grpc.StatusCode.PERMISSION_DENIED,
                ):
                    # Typed, as Client raises them (agent_sdk.errors is the SDK's one status table).
                    raise from_rpc_error(exc) from None
                log.info("stream to %s ended: %s", self.server, exc.details() or exc.code().name)
            if self._stop.is_set() or not self.reconnect:
                break
            attempt += 1
            delay = min(self.max_backoff, 0.1 * 2 ** min(attempt, 10)) * random.uniform(0.5, 1.0)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), delay)
        await self._cancel_all()

    async def shutdown(self, grace: float = 30.0) -> None:
        """Drain: take no new work, give running work ``grace`` seconds, then stop."""
        self._draining = True
        self._send(gw.ConnectRequest(heartbeat=self._heartbeat_msg()))
        await self._wait_idle(grace)
        self._stop.set()
        if self._outbox is not None:
            self._outbox.put_nowait(_CLOSE)

    async def __aenter__(self) -> Worker:
        self._runner = asyncio.get_running_loop().create_task(self.run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.shutdown(grace=5.0)
        await self._runner

    # --- the stream -----------------------------------------------------------

    async def _session(self) -> None:
        bearer = self.credential or self.token
        metadata = (("authorization", f"Bearer {bearer}"),) if bearer else None
        # Several addresses: the channel connects to the first live one (see agent_sdk.addresses), so a
        # session broken by a dying control plane resumes on another.
        channel = open_channel(
            self._addresses,
            options=CHANNEL_OPTIONS,
            credentials=self.credentials,
            tls_server_name=self.tls_server_name,
        )
        async with channel:
            stub = gw_grpc.AgentGatewayStub(channel)
            self._outbox = asyncio.Queue()
            self._result_batches = False  # until this stream's Registered says otherwise
            self._outbox.put_nowait(gw.ConnectRequest(register=self._register_msg()))
            call = stub.Connect(self._requests(self._outbox), metadata=metadata)
            heartbeats: asyncio.Task[None] | None = None
            try:
                async for response in call:
                    kind = response.WhichOneof("message")
                    if kind == "assignment":
                        self._start(response.assignment)
                    elif kind == "assignments":
                        for assignment in response.assignments.assignments:
                            self._start(assignment)
                    elif kind == "committed":
                        for ref in response.committed.refs:
                            self._unacked.pop(f"{ref.subtask}#{ref.lease_epoch}", None)
                    elif kind == "ack":
                        self._unacked.pop(response.ack.ref.subtask + f"#{response.ack.ref.lease_epoch}", None)
                        if not response.ack.accepted:
                            log.warning(
                                "report on %s rejected: %s", response.ack.ref.subtask, response.ack.message
                            )
                    elif kind == "cancel":
                        self._cancel(response.cancel.ref, response.cancel.reason)
                    elif kind == "registered":
                        heartbeats = self._on_registered(response.registered, heartbeats)
                    elif kind == "drain":
                        self._exit_after_drain = response.drain.exit
                        asyncio.get_running_loop().create_task(self.shutdown(_seconds(response.drain.grace)))
                    elif kind == "state":
                        waiter = self._state_waiters.pop(response.state.request_id, None)
                        if waiter is not None and not waiter.done():
                            waiter.set_result(response.state)
                    elif kind == "permit":
                        permit_waiter = self._permit_waiters.pop(response.permit.request_id, None)
                        if permit_waiter is not None and not permit_waiter.done():
                            permit_waiter.set_result(response.permit)
                    elif kind == "vote_request":
                        self._spawn(self._vote(response.vote_request))
                    elif kind == "pause":
                        log.info("paused by the control plane")
                    elif kind == "resume":
                        log.info("resumed by the control plane")
            finally:
                if heartbeats:
                    heartbeats.cancel()
                for waiter in self._state_waiters.values():  # their answers will never come
                    if not waiter.done():
                        waiter.set_exception(ConnectionError("the stream to the control plane broke"))
                self._state_waiters.clear()
                for permit_waiter in self._permit_waiters.values():  # asked again on the next stream
                    if not permit_waiter.done():
                        permit_waiter.set_exception(ConnectionError("the stream to the control plane broke"))
                self._permit_waiters.clear()
                self._outbox.put_nowait(_CLOSE)
                self._outbox = None
                self.registered.clear()

    async def _requests(self, outbox: asyncio.Queue[Any]) -> AsyncIterator[gw.ConnectRequest]:
        """What the stream sends: the outbox, with results queued back to back sent as one message."""
        while True:
            item = await outbox.get()
            if (
                self._result_batches
                and item is not _CLOSE
                and not outbox.empty()
                and item.WhichOneof("message") == "result"
            ):
                batch, item = _take_results(item, outbox)
                yield batch
                if item is None:
                    continue
            if item is _CLOSE:
                return
            yield item

    def _send(self, message: gw.ConnectRequest) -> None:
        if self._outbox is not None:
            self._outbox.put_nowait(message)

    def _register_msg(self) -> gw.Register:
        reg = gw.Register(
            agent_type=self.agent.agent_type,
            capabilities=self.capabilities,
            max_concurrency=self.max_concurrency,
            labels=self.labels,
            language="python",
            sdk_version=SDK_VERSION,
            hostname=socket.gethostname(),
            pid=os.getpid(),
            launch_id=self.launch_id,
            accepts_assignment_batches=True,
            backing=cast(enums_pb.AgentBacking, int(getattr(self.agent, "backing", 0))),
        )
        if self.join_token and not self.credential:
            reg.join_token = self.join_token
        if self.agent_name:
            reg.resume.agent = self.agent_name
            reg.resume.session_id = self.session_id
            reg.resume.assignments.extend(ref for _, ref in self._running.values())
        return reg

    def _on_registered(
        self, registered: gw.Registered, heartbeats: asyncio.Task[None] | None
    ) -> asyncio.Task[None]:
        self.agent_name = registered.agent
        self.session_id = registered.session_id
        if registered.credential:
            self.credential = registered.credential
        self._heartbeat_interval = _seconds(registered.heartbeat_interval) or 5.0
        self._idle_heartbeat_interval = max(
            self._heartbeat_interval, _seconds(registered.idle_heartbeat_interval)
        )
        self._result_batches = registered.accepts_result_batches
        self._paced = registered.paces_model_calls
        for ref in registered.revoked:
            self._cancel(ref, "re-leased elsewhere while disconnected")
        for message in list(self._unacked.values()):
            self._send(message)  # reports the server may not have seen before the stream broke
        self.registered.set()
        if heartbeats:
            heartbeats.cancel()
        return asyncio.get_running_loop().create_task(self._heartbeat_loop())

    def _heartbeat_msg(self) -> gw.Heartbeat:
        return gw.Heartbeat(
            running=[ref for _, ref in self._running.values()],
            free_slots=0 if self._draining else max(0, self.max_concurrency - len(self._running)),
            draining=self._draining,
        )

    async def _heartbeat_loop(self) -> None:
        last_sent = -math.inf
        free_sent = -1
        while True:
            await asyncio.sleep(next_heartbeat(self._heartbeat_interval, time.time()))
            beat = self._heartbeat_msg()
            idle = not beat.running and not beat.draining and beat.free_slots == free_sent
            at = time.monotonic()
            if heartbeat_due(idle, at - last_sent, self._heartbeat_interval, self._idle_heartbeat_interval):
                self._send(gw.ConnectRequest(heartbeat=beat))
                last_sent, free_sent = at, beat.free_slots

    # --- assignments ----------------------------------------------------------

    def _start(self, a: gw.Assignment) -> None:
        key = f"{a.ref.subtask}#{a.ref.lease_epoch}"
        if self._draining:
            self._send(
                gw.ConnectRequest(
                    failure=gw.SubtaskFailure(
                        ref=a.ref, message="the agent is shutting down", retryable=True, error_type="Draining"
                    )
                )
            )
            return
        assignment = assignment_from_pb(a)
        ref = gw.AssignmentRef()
        ref.CopyFrom(a.ref)
        task = asyncio.get_running_loop().create_task(self._execute(key, ref, assignment))
        self._running[key] = (task, ref)

    async def _execute(self, key: str, ref: gw.AssignmentRef, assignment: Assignment) -> None:
        def send(kind: str, fields: dict[str, Any]) -> None:
            if kind == "progress":
                msg = gw.Progress(ref=ref, fraction=fields["fraction"], message=fields["message"])
                if fields["checkpoint"] is not None:
                    msg.checkpoint = fields["checkpoint"]
                self._send(gw.ConnectRequest(progress=msg))
            else:
                self._send(
                    gw.ConnectRequest(
                        output=gw.OutputChunk(ref=ref, text=fields["text"], sequence=fields["sequence"])
                    )
                )

        logger = logging.LoggerAdapter(
            self._agent_logger(), {"maos_task": assignment.task, "maos_subtask": assignment.subtask}
        )
        ctx = Context(
            assignment,
            send,
            logger,
            SharedState(lambda *args: self._state_call(ref, *args)),
            pacer=self.pacer,
        )
        try:
            outcome = await self.agent.handle(ctx)
            result = outcome if isinstance(outcome, Result) else Result(output=str(outcome))
            spent = result.usage if _usage(result.usage).ByteSize() else ctx.spent
            report = gw.ConnectRequest(
                result=gw.SubtaskResult(
                    ref=ref,
                    output=result.output,
                    usage=_usage(spent),
                    artifacts=[
                        msgs.Artifact(
                            name=a.name, media_type=a.media_type, content=a.content, size_bytes=len(a.content)
                        )
                        for a in result.artifacts
                    ],
                    tool_calls=[
                        msgs.ToolCall(
                            name=c.name,
                            server=c.server,
                            duration=_duration(c.duration),
                            is_error=c.is_error,
                            summary=c.summary,
                            turn=c.turn,
                        )
                        for c in result.tool_calls
                    ],
                    sources=[
                        msgs.Source(url=x.url, title=x.title, cited_text=x.cited_text) for x in result.sources
                    ],
                )
            )
            self.completed += 1
        except asyncio.CancelledError:
            self._running.pop(key, None)
            if key in self._stopped and _usage(ctx.spent).ByteSize():
                # Stopped by the control plane: the attempt is over there, but what it spent is still charged.
                self._send(
                    gw.ConnectRequest(
                        failure=gw.SubtaskFailure(
                            ref=ref, message="cancelled", error_type="Cancelled", usage=_usage(ctx.spent)
                        )
                    )
                )
            self._stopped.discard(key)
            raise
        except AgentError as exc:
            report = gw.ConnectRequest(
                failure=gw.SubtaskFailure(
                    ref=ref,
                    message=str(exc),
                    retryable=exc.retryable,
                    error_type=exc.error_type,
                    retry_after=_duration(exc.retry_after),
                    usage=_usage(ctx.spent),
                    reason=errors_pb.ERROR_REASON_BUDGET_EXCEEDED
                    if isinstance(exc, BudgetExhausted)
                    else errors_pb.ERROR_REASON_UNSPECIFIED,
                )
            )
        except Exception as exc:  # an unexpected bug in the agent: permanent
            log.exception("assignment %s failed", assignment.subtask)
            report = gw.ConnectRequest(
                failure=gw.SubtaskFailure(
                    ref=ref,
                    message=f"{type(exc).__name__}: {exc}",
                    retryable=False,
                    error_type=type(exc).__name__,
                    usage=_usage(ctx.spent),
                )
            )
        self._running.pop(key, None)
        self._unacked[key] = report
        self._send(report)

    def _agent_logger(self) -> logging.Logger:
        logger = logging.getLogger(f"maos.agent.{self.agent.agent_type}")
        if self._log_handler not in logger.handlers:
            logger.addHandler(self._log_handler)
            if logger.level == logging.NOTSET:
                logger.setLevel(logging.INFO)  # ctx.log.info reaches the control plane by default
        return logger

    async def _state_call(
        self,
        ref: gw.AssignmentRef,
        op: str,
        key: str,
        value: bytes | None = None,
        expected: int | None = None,
    ) -> Any:
        self._state_seq += 1
        request = gw.SharedStateRequest(request_id=self._state_seq, ref=ref, key=key)
        if op == "get":
            request.get.SetInParent()
        elif op == "put":
            request.put.value = value or b""
            request.put.force = expected is None
            request.put.expected_version = expected or 0
        else:
            request.delete.force = expected is None
            request.delete.expected_version = expected or 0
        waiter = asyncio.get_running_loop().create_future()
        self._state_waiters[self._state_seq] = waiter
        self._send(gw.ConnectRequest(state=request))
        reply = await waiter
        if reply.error:
            reason = errors_pb.ErrorReason.Name(reply.error)
            if reason == "ERROR_REASON_VERSION_CONFLICT":
                raise StateConflict(key, expected or 0, reply.version)
            raise RuntimeError(f"shared state {op} of {key!r} failed: {reply.error_message} ({reason})")
        if op == "get":
            return (reply.value, reply.version) if reply.found else None
        if op == "put":
            return reply.version
        return None

    # --- model pacing --------------------------------------------------------------

    async def _ask_permit(
        self, model: str, input_tokens: int, output_tokens: int, max_wait: float
    ) -> PermitAnswer:
        """Ask the control plane for a permit (see :mod:`agent_sdk.pacing`); at once when it paces nothing.

        While the stream is down the request waits for the next one, within ``max_wait``.
        """
        deadline = time.monotonic() + max_wait
        while True:
            if not self.registered.is_set():
                try:
                    await asyncio.wait_for(self.registered.wait(), max(0.0, deadline - time.monotonic()))
                except TimeoutError:
                    return PermitAnswer(False, retry_after=1.0, reason="not connected to the control plane")
            if not self._paced:
                return PermitAnswer(True, "")
            self._permit_seq += 1
            request_id = self._permit_seq
            waiter: asyncio.Future[gw.ModelPermit] = asyncio.get_running_loop().create_future()
            self._permit_waiters[request_id] = waiter
            self._send(
                gw.ConnectRequest(
                    permit_request=gw.ModelPermitRequest(
                        request_id=request_id,
                        model=model,
                        input_tokens=min(input_tokens, _UINT32),
                        output_tokens=min(output_tokens, _UINT32),
                        max_wait=_duration(max(0.0, deadline - time.monotonic())),
                    )
                )
            )
            try:
                reply = await waiter
            except ConnectionError:
                continue
            finally:
                self._permit_waiters.pop(request_id, None)
            return PermitAnswer(
                reply.granted,
                reply.permit_id,
                _seconds(reply.waited),
                _seconds(reply.retry_after),
                reply.reason,
            )

    def _send_outcome(self, outcome: Outcome) -> None:
        if not self._paced or not outcome.permit_id:
            return
        message = gw.ModelCallOutcome(
            permit_id=outcome.permit_id,
            model=outcome.model,
            status_code=max(0, outcome.status),
            headers=dict(outcome.headers or {}),
            input_tokens=min(outcome.input_tokens, _UINT32),
            output_tokens=min(outcome.output_tokens, _UINT32),
            abandoned=outcome.abandoned,
        )
        if outcome.retry_after is not None:
            message.retry_after.CopyFrom(_duration(outcome.retry_after))
        self._send(gw.ConnectRequest(model_outcome=message))

    async def _vote(self, request: gw.VoteRequest) -> None:
        ballot = Ballot(
            proposal=request.proposal,
            task=request.task,
            question=request.question,
            candidates=[Candidate(c.id, c.agent, c.content) for c in request.candidates],
            round=request.round,
            deadline=optional_seconds(request, "deadline"),
            previous_votes=[
                (v.voter, v.candidate_id, v.confidence, v.rationale) for v in request.previous_votes
            ],
            context=request.context,
            constraints=request.constraints,
            remaining_tokens=request.remaining_budget.max_total_tokens,
            remaining_cost_micros=request.remaining_budget.max_cost_micros,
        )
        try:
            choice = await self.agent.vote(ballot)
        except Exception as exc:  # a failing judge abstains (at once) rather than breaking the agent
            log.exception("vote on %s failed", request.proposal)
            choice = VoteChoice.abstention(f"the vote failed: {type(exc).__name__}: {exc}"[:1000])
        self._send(
            gw.ConnectRequest(
                vote=gw.CastVote(
                    proposal=request.proposal,
                    candidate_id="" if choice.abstain else choice.candidate_id,
                    confidence=min(1.0, max(0.0, choice.confidence)),
                    rationale=choice.rationale,
                    round=request.round,
                    request_id=f"{request.proposal}#{request.round}",
                    usage=_usage(choice.usage),
                    abstain=choice.abstain,
                )
            )
        )

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _cancel(self, ref: gw.AssignmentRef, reason: str) -> None:
        key = f"{ref.subtask}#{ref.lease_epoch}"
        entry = self._running.pop(key, None)
        if entry is not None:
            log.info("cancelling %s: %s", ref.subtask, reason)
            self._stopped.add(key)
            entry[0].cancel()

    async def _wait_idle(self, grace: float) -> None:
        tasks = [t for t, _ in self._running.values()]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=grace)
            for task in pending:
                task.cancel()
        # Give the stream a moment to deliver the final reports.
        for _ in range(50):
            if not self._unacked or self._outbox is None:
                break
            await asyncio.sleep(0.02)

    async def _cancel_all(self) -> None:
        for task, _ in list(self._running.values()):
            task.cancel()
        self._running.clear()


def _usage(u: Usage) -> msgs.TokenUsage:
    return msgs.TokenUsage(
        input_tokens=u.input_tokens,
        output_tokens=u.output_tokens,
        cache_read_input_tokens=u.cache_read_input_tokens,
        cache_creation_input_tokens=u.cache_creation_input_tokens,
        cost_micros=u.cost_micros,
        model_calls=u.model_calls,
        web_search_requests=u.web_search_requests,
        web_fetch_requests=u.web_fetch_requests,
        tool_calls=u.tool_calls,
    )


def _duration(seconds: float) -> Any:
    from google.protobuf import duration_pb2

    d = duration_pb2.Duration()
    d.FromNanoseconds(int(max(0.0, seconds) * 1e9))
    return d


def heartbeat_due(idle: bool, since_last: float, interval: float, idle_interval: float) -> bool:
    """Whether the heartbeat of this slot goes out: always while the agent runs work, drains or has
    just changed its free slots (``idle`` false); while idle, once ``idle_interval`` has passed since
    the last one (half a slot early, so that beats stay on the grid)."""
    return not idle or since_last >= idle_interval - interval / 2


def next_heartbeat(interval: float, now: float) -> float:
    """Seconds until the next heartbeat: the first slot boundary at least ``interval - slot`` away.

    Consecutive beats are exactly ``interval`` apart once on the grid (never more), and agents stay
    spread over the slots by when they registered.
    """
    slot = interval / HEARTBEAT_SLOTS
    past = now % slot
    if slot - past < slot / 1000:  # on a boundary, give or take a rounding error: this slot is ours
        past = 0.0
    return interval - past


_LEVELS = {
    logging.DEBUG: enums_pb.LOG_LEVEL_DEBUG,
    logging.INFO: enums_pb.LOG_LEVEL_INFO,
    logging.WARNING: enums_pb.LOG_LEVEL_WARNING,
    logging.ERROR: enums_pb.LOG_LEVEL_ERROR,
    logging.CRITICAL: enums_pb.LOG_LEVEL_CRITICAL,
}


class _ForwardingHandler(logging.Handler):
    """Forwards an agent's log records (``ctx.log``) to the control plane over the stream."""

    def __init__(self, worker: Worker):
        super().__init__(level=logging.INFO)
        self.worker = worker

    def emit(self, record: logging.LogRecord) -> None:
        try:
            entry = msgs.LogRecord(
                level=_LEVELS.get(record.levelno, enums_pb.LOG_LEVEL_INFO),
                component=self.worker.agent_name or f"agents/{self.worker.agent.agent_type}",
                message=record.getMessage(),
                task=getattr(record, "maos_task", ""),
                subtask=getattr(record, "maos_subtask", ""),
                agent=self.worker.agent_name,
            )
            entry.time.FromNanoseconds(int(record.created * 1e9))
            self.worker._send(gw.ConnectRequest(logs=gw.AgentLogs(records=[entry])))
        except Exception:  # logging must never break the agent
            self.handleError(record)
