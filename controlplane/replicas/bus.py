"""Requests between replicas: "whoever holds agent X / task Y: do this", and the holder's answer.

An agent holds its stream to one replica and a task is held by one replica's engine, so a call
that reaches another replica must be carried to the holder. :class:`ReplicaBus` broadcasts a
request to every replica and waits, within a deadline, for the first one that handled it:

* each replica registers a handler per kind of request (:meth:`ReplicaBus.handle`); a handler
  returns a JSON-able answer when this replica holds the target, or None ("not mine");
* a replica that does not hold the target says so at once, so when every live peer (the count
  comes from the replica registry) has declined, :meth:`ReplicaBus.ask` returns None without
  waiting out the deadline; without a count it returns None at the deadline;
* a holder whose handler takes a while (a restart waits for the new process) says "working"
  every third of the asker's deadline, which keeps the asker waiting; a holder that falls silent
  mid-way makes :meth:`ReplicaBus.ask` raise Unavailable (the target is held, so it is not
  "nobody");
* a domain error raised by the holder's handler (NotFound, PermissionDenied, …) is raised again
  on the asking replica, same class, reason and metadata: the caller gets the holder's answer;
* an answer too long for the transport is replaced by :attr:`Answer.truncated` (the asker then
  reads what the holder committed instead).

Transports are those of :mod:`controlplane.replicas.wakeups` (Redis pub/sub when ``redis.url``
is set, PostgreSQL LISTEN/NOTIFY otherwise): requests on the topic :data:`REQUESTS`, answers on
a topic of the asking replica. Payloads are JSON, at most :data:`REDIS_MAX_PAYLOAD` bytes over
Redis and :data:`POSTGRES_MAX_PAYLOAD` over NOTIFY. When the transport cannot be used (Redis or
the database unreachable, the subscription down) :meth:`ReplicaBus.ask` raises
:class:`~controlplane.errors.Unavailable` at once, never hangs.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import inspect
import json
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from controlplane import errors
from controlplane.errors import FieldViolation, InvalidArgument, MaosError, Unavailable

log = logging.getLogger(__name__)

#: The topic every replica listens to for requests.
REQUESTS = "route"
#: Longest payload over Redis pub/sub (bytes).
REDIS_MAX_PAYLOAD = 256 * 1024
#: Longest payload over NOTIFY (PostgreSQL refuses 8000 bytes and more).
POSTGRES_MAX_PAYLOAD = 7900
#: Seconds a publish may take before the transport counts as unavailable.
PUBLISH_TIMEOUT = 2.0
#: Seconds the count of live peers is cached (it is read from the replica registry).
PEERS_TTL = 1.0
#: Requests handled at once on one replica; more are declined (the asker then waits for others).
MAX_HANDLING = 256

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any] | None]]


@dataclass
class Answer:
    """What the replica that handled a request answered."""

    replica: str
    result: dict[str, Any] = field(default_factory=dict)
    #: The answer did not fit the transport: read the committed state instead.
    truncated: bool = False


def reply_topic(replica: str) -> str:
    """The topic on which ``replica`` receives answers (a replica id is not always a topic name)."""
    return "route_" + hashlib.sha256(replica.encode()).hexdigest()[:24]


def encode_error(exc: MaosError) -> dict[str, Any]:
    """A domain error as JSON (its class, message, reason, metadata and field violations)."""
    out: dict[str, Any] = {
        "type": type(exc).__name__,
        "message": exc.message,
        "reason": exc.reason,
        "metadata": dict(exc.metadata),
    }
    if isinstance(exc, InvalidArgument):
        out["violations"] = [[v.field, v.description] for v in exc.violations]
    retry_after = getattr(exc, "retry_after", None)
    if retry_after is not None:
        out["retry_after"] = retry_after
    return out


def decode_error(data: dict[str, Any]) -> MaosError:
    """The domain error :func:`encode_error` encoded (a MaosError when its class is unknown here)."""
    cls = getattr(errors, str(data.get("type", "")), None)
    if not (isinstance(cls, type) and issubclass(cls, MaosError)):
        cls = MaosError
    exc = cls.__new__(cls)
    MaosError.__init__(
        exc,
        str(data.get("message", "")),
        reason=str(data.get("reason", "")) or None,
        metadata={str(k): str(v) for k, v in dict(data.get("metadata") or {}).items()},
    )
    if isinstance(exc, InvalidArgument):
        exc.violations = [FieldViolation(str(f), str(d)) for f, d in data.get("violations") or []]
    if "retry_after" in data or cls is errors.ResourceExhausted:
        exc.retry_after = data.get("retry_after")  # type: ignore[attr-defined]
    return exc


@dataclass
class _Pending:
    future: asyncio.Future[Answer | None]
    expected: int | None
    declined: set[str] = field(default_factory=set)
    #: The replica that said it is working on the request, and when it last said so.
    holder: str = ""
    working_at: float = 0.0


class ReplicaBus:
    """Requests to whichever replica holds something, over a wake-up transport.

    Args:
        transport: A :class:`~controlplane.replicas.wakeups.RedisWakeupBus` or
            :class:`~controlplane.replicas.wakeups.PostgresWakeupBus` of its own (it carries
            payloads of up to its ``max_payload`` bytes).
        replica: This replica's id.
        timeout: Seconds :meth:`ask` waits for an answer (``replicas.route_timeout``).
        peers: How many other replicas are live (sync or async); None: unknown, so a request
            nobody handled takes the whole ``timeout``.
        where: What the transport is, for messages ("Redis at redis://…").
    """

    def __init__(
        self,
        transport: Any,
        replica: str,
        *,
        timeout: float = 3.0,
        peers: Callable[[], Any] | None = None,
        where: str = "the replicas' bus",
    ):
        self.transport = transport
        self.replica = replica
        self.timeout = timeout
        self.where = where
        self._peers = peers
        self._peers_cached: tuple[float, int | None] = (0.0, None)
        self._handlers: dict[str, Handler] = {}
        self._pending: dict[str, _Pending] = {}
        self._handling: set[asyncio.Task[None]] = set()
        self._reply_topic = reply_topic(replica)
        self._started = False

    def handle(self, kind: str, handler: Handler) -> None:
        """Answer requests of ``kind`` with ``handler(body)``: a JSON-able dict, or None if not ours."""
        self._handlers[kind] = handler

    async def start(self) -> None:
        """Subscribe to requests and to this replica's answers."""
        if self._started:
            return
        self.transport.subscribe(REQUESTS, self._on_request)
        self.transport.subscribe(self._reply_topic, self._on_answer)
        await self.transport.start()
        self._started = True

    async def close(self) -> None:
        """Stop listening; requests waiting for an answer get None."""
        for task in list(self._handling):
            task.cancel()
        await asyncio.gather(*self._handling, return_exceptions=True)
        for pending in self._pending.values():
            if not pending.future.done():
                pending.future.set_result(None)
        await self.transport.close()
        self._started = False

    @property
    def listening(self) -> bool:
        """Whether requests and answers can be received now."""
        return self._started and bool(getattr(self.transport, "listening", True))

    async def _peer_count(self) -> int | None:
        if self._peers is None:
            return None
        at, count = self._peers_cached
        if time.monotonic() - at < PEERS_TTL:
            return count
        try:
            value = self._peers()
            if inspect.isawaitable(value):
                value = await value
            count = int(value)
        except Exception as exc:  # the registry is in the database: without it, wait out the deadline
            log.warning("replicas' bus: cannot count live replicas (%s)", exc)
            count = None
        self._peers_cached = (time.monotonic(), count)
        return count

    async def ask(
        self, kind: str, body: dict[str, Any], timeout: float | None = None, only: str | None = None
    ) -> Answer | None:
        """Broadcast a request; the first answer of a replica that handled it, or None if none did.

        None comes as soon as every live peer declined, else at the deadline (``timeout``,
        default the bus's). A handler's domain error is raised here. With ``only`` (a replica's id)
        the other replicas ignore the request, and None comes as soon as that one declines.

        Raises:
            Unavailable: The transport cannot carry the request, or cannot receive answers now.
            InvalidArgument: The request is longer than the transport carries.
            MaosError: The error the holder's handler raised.
        """
        if not self.listening or self.transport is None:
            raise Unavailable(
                f"cannot reach the other replicas: {self.where} is not connected now "
                "(the call needs the replica that holds its agent or task); retry shortly",
                metadata={"transport": self.where},
            )
        expected = 1 if only else await self._peer_count()
        if expected == 0:
            return None
        request_id = secrets.token_hex(12)
        timeout = timeout or self.timeout
        envelope = {
            "i": request_id,
            "f": self.replica,
            "r": self._reply_topic,
            "k": kind,
            "b": body,
            "d": timeout,
        }
        if only:
            envelope["o"] = only
        payload = json.dumps(envelope, separators=(",", ":"))
        if len(payload.encode()) > self.transport.max_payload:
            raise InvalidArgument(
                f"the request is {len(payload.encode())} bytes once encoded; another replica can be "
                f"sent at most {self.transport.max_payload}",
                reason="ERROR_REASON_LIMIT_EXCEEDED",
            )
        future: asyncio.Future[Answer | None] = asyncio.get_running_loop().create_future()
        pending = self._pending[request_id] = _Pending(future, expected)
        try:
            try:
                await asyncio.wait_for(self.transport.publish(REQUESTS, payload), PUBLISH_TIMEOUT)
            except Exception as exc:
                raise Unavailable(
                    f"cannot reach the other replicas through {self.where}: "
                    f"{exc or type(exc).__name__}; retry shortly",
                    metadata={"transport": self.where},
                ) from None
            deadline = time.monotonic() + timeout
            while True:
                try:
                    answer = await asyncio.wait_for(asyncio.shield(future), deadline - time.monotonic())
                    break
                except TimeoutError:
                    if not pending.holder:
                        return None
                    if pending.working_at + timeout > time.monotonic():
                        deadline = pending.working_at + timeout  # the holder is still at it
                        continue
                    raise Unavailable(
                        f"replica {pending.holder}, which holds the target, stopped answering "
                        f"{timeout:g} s ago; the call may or may not have taken effect there",
                        metadata={"replica": pending.holder},
                    ) from None
        finally:
            self._pending.pop(request_id, None)
        return answer

    # --- receiving ------------------------------------------------------------

    def _on_request(self, payload: str) -> None:
        try:
            message = json.loads(payload)
            request_id, sender, topic = str(message["i"]), str(message["f"]), str(message["r"])
            kind, body = str(message["k"]), dict(message["b"])
            every = max(0.05, float(message.get("d", 3.0)) / 3)
        except (ValueError, KeyError, TypeError):
            log.warning("replicas' bus: a malformed request was ignored")
            return
        if sender == self.replica or message.get("o") not in (None, self.replica):
            return  # (its own, or one for another replica only)
        if len(self._handling) >= MAX_HANDLING:
            # Not "not mine": it may hold the target, and "nobody holds it" would be acted on.
            log.warning("replicas' bus: %d requests in hand; one was answered busy", MAX_HANDLING)
            busy = Unavailable(
                f"replica {self.replica} has {MAX_HANDLING} calls from other replicas in hand; try again",
                metadata={"replica": self.replica},
            )
            self._spawn(
                self._send(topic, {"i": request_id, "f": self.replica, "h": 1, "e": encode_error(busy)})
            )
            return
        self._spawn(self._serve(request_id, topic, kind, body, every))

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._handling.add(task)
        task.add_done_callback(self._handling.discard)

    async def _serve(
        self, request_id: str, topic: str, kind: str, body: dict[str, Any], every: float
    ) -> None:
        handler = self._handlers.get(kind)
        answer: dict[str, Any] = {"i": request_id, "f": self.replica, "h": 0}
        if handler is not None:
            try:
                result = await self._working(handler(body), request_id, topic, every)
                if result is not None:
                    answer = {"i": request_id, "f": self.replica, "h": 1, "r": result}
            except MaosError as exc:
                answer = {"i": request_id, "f": self.replica, "h": 1, "e": encode_error(exc)}
            except Exception:
                log.exception("replicas' bus: handling a %s request failed", kind)
                answer = {
                    "i": request_id,
                    "f": self.replica,
                    "h": 1,
                    "e": encode_error(MaosError(f"replica {self.replica} failed; see its log")),
                }
        text = json.dumps(answer, separators=(",", ":"))
        if len(text.encode()) > self.transport.max_payload:
            answer = {"i": request_id, "f": self.replica, "h": 1, "t": 1}
            text = json.dumps(answer)
        await self._send(topic, text)

    async def _working(self, work: Awaitable[Any], request_id: str, topic: str, every: float) -> Any:
        """Await ``work``, telling the asker "working" every ``every`` seconds until it is done."""
        task = asyncio.ensure_future(work)
        try:
            while True:
                done, _ = await asyncio.wait({task}, timeout=every)
                if done:
                    return task.result()
                await self._send(topic, {"i": request_id, "f": self.replica, "h": 2})
        finally:
            task.cancel()

    async def _send(self, topic: str, answer: Any) -> None:
        text = answer if isinstance(answer, str) else json.dumps(answer, separators=(",", ":"))
        try:
            await asyncio.wait_for(self.transport.publish(topic, text), PUBLISH_TIMEOUT)
        except Exception as exc:  # the asker learns it at its deadline
            log.warning("replicas' bus: an answer could not be sent (%s)", exc)

    def _on_answer(self, payload: str) -> None:
        try:
            message = json.loads(payload)
            pending = self._pending.get(str(message["i"]))
        except (ValueError, KeyError, TypeError):
            log.warning("replicas' bus: a malformed answer was ignored")
            return
        if pending is None or pending.future.done():
            return  # late, or a second holder: the first answer counts
        sender = str(message.get("f", ""))
        if message.get("h") == 2:
            pending.holder, pending.working_at = sender, time.monotonic()
            return
        if not message.get("h"):
            pending.declined.add(sender)
            if pending.expected is not None and len(pending.declined) >= pending.expected:
                pending.future.set_result(None)
            return
        if "e" in message:
            pending.future.set_exception(decode_error(dict(message["e"])))
            with contextlib.suppress(Exception):
                pending.future.exception()  # retrieved here: ask() raises it, if still waiting
            return
        pending.future.set_result(
            Answer(sender, dict(message.get("r") or {}), truncated=bool(message.get("t")))
        )
