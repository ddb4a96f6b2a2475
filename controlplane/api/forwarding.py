"""Calls for an agent or a task that another replica holds, carried to it and answered by it.

An agent's stream is on one replica, and an unfinished task is held by one replica's engine.
A servicer asked about an agent not connected here, or a task not held here, hands the call to
:class:`Forwarder`, which sends it over the replicas' bus (:mod:`controlplane.replicas.bus`):
the replica holding the target runs the **same servicer method** with the caller's identity
(principal, roles, permissions) and its answer, or its error, is the caller's. So permissions
and answers are those of the holder's local call; the audit record is the receiving replica's,
written by its interceptor as for any call (the holder writes none).

When no replica holds the target, the receiving replica acts itself: an agent connected
nowhere is answered from what is stored (NotFound, FailedPrecondition "not connected", or a
terminate marking it TERMINATED); an unfinished task nobody holds is claimed here first
(``Engine.claim_task``, from the scheduler's claims; without it, the stored task is acted on
here, as one control plane does). A task the asked replica gave up a moment ago and has not let go
yet (still marked leaving from it, which the asker's claim does not take) is taken back by that
replica, which serves the call (``Engine.take_back``).
"""

from __future__ import annotations

import base64
import contextvars
from collections.abc import Awaitable, Callable
from typing import Any

from google.protobuf.message import Message

from controlplane.access.manager import Caller
from controlplane.api.context import caller_var, current_principal, principal_var
from controlplane.errors import Unavailable
from controlplane.replicas.bus import ReplicaBus

#: Set while a call forwarded by another replica runs here: it is never forwarded again.
forwarded_var: contextvars.ContextVar[bool] = contextvars.ContextVar("maos_forwarded", default=False)

Rebuild = Callable[[], Awaitable[Message]]


def _encode_caller(caller: object) -> dict[str, Any] | None:
    if caller is None:
        return {}
    if isinstance(caller, Caller):
        return {
            "principal": caller.principal,
            "key_id": caller.key_id,
            "roles": list(caller.roles),
            "role_permissions": sorted(caller.role_permissions),
            "key_permissions": sorted(caller.key_permissions),
        }
    return None  # a kind of caller this module cannot carry: the call is answered here


def _decode_caller(data: dict[str, Any]) -> Caller | None:
    if not data:
        return None
    return Caller(
        principal=str(data["principal"]),
        key_id=str(data.get("key_id", "")),
        roles=tuple(data.get("roles") or ()),
        role_permissions=frozenset(data.get("role_permissions") or ()),
        key_permissions=frozenset(data.get("key_permissions") or ()),
    )


class Forwarder:
    """Carries agent and task calls to the replica holding their target (see the module docstring).

    Args:
        bus: The replicas' bus (started and closed by its owner).
        engine: This replica's engine: who is connected here, which tasks are held here.
    """

    def __init__(self, bus: ReplicaBus, engine: Any):
        self.bus = bus
        self.engine = engine
        #: method name -> (servicer method, request class, response class)
        self._methods: dict[str, tuple[Callable[..., Awaitable[Message]], type[Message], type[Message]]] = {}
        bus.handle("agent", lambda body: self._serve(body, self._holds_agent))
        bus.handle("task", lambda body: self._serve(body, self.holds_task))

    def serve(self, servicer: Any, methods: dict[str, tuple[type[Message], type[Message]]]) -> None:
        """Let other replicas run ``methods`` (name -> (request, response) classes) of ``servicer``."""
        for name, (request_cls, response_cls) in methods.items():
            self._methods[name] = (getattr(servicer, name), request_cls, response_cls)

    # --- who holds what ----------------------------------------------------------

    def _holds_agent(self, agent_id: str) -> bool:
        return self.engine.connected_session(agent_id) is not None

    def holds_task(self, task_id: str) -> bool:
        """Whether this replica's engine holds the task (``Engine.holds`` once claims exist)."""
        holds = getattr(self.engine, "holds", None)
        if callable(holds):
            return bool(holds(task_id))
        return self.engine.task_owner(task_id) is not None

    async def claim(self, task_id: str) -> None:
        """Take an unfinished task that no live replica answered for into this replica's engine.

        Raises:
            Unavailable: Another replica still holds it (it did not answer in time).
        """
        if self.holds_task(task_id) or await self.engine.claim_task(task_id):
            return  # (without claims, SQLite, this process holds every task)
        raise Unavailable(
            f"task tasks/{task_id} is held by another replica that did not answer within "
            f"{self.bus.timeout:g} s (replicas.route_timeout); retry shortly",
            reason="ERROR_REASON_NOT_LEASE_HOLDER",
            metadata={"task": f"tasks/{task_id}"},
        )

    # --- asking ------------------------------------------------------------------

    async def agent(self, method: str, request: Message, agent_id: str, rebuild: Rebuild) -> Message | None:
        """The answer of the replica the agent is connected to, or None: answer here.

        None when it is connected here, when this call was itself forwarded, or when no
        replica has it connected.
        """
        if forwarded_var.get() or self._holds_agent(agent_id):
            return None
        return await self._ask("agent", method, request, agent_id, rebuild)

    async def task(self, method: str, request: Message, task_id: str, rebuild: Rebuild) -> Message | None:
        """The answer of the replica holding the task, or None: answer here (see :meth:`agent`)."""
        if forwarded_var.get() or self.holds_task(task_id):
            return None
        return await self._ask("task", method, request, task_id, rebuild)

    async def _ask(
        self, kind: str, method: str, request: Message, target: str, rebuild: Rebuild
    ) -> Message | None:
        caller = _encode_caller(caller_var.get())
        if caller is None or method not in self._methods:
            return None
        body = {
            "m": method,
            "t": target,
            "p": current_principal(),
            "c": caller,
            "q": base64.b64encode(request.SerializeToString()).decode(),
        }
        answer = await self.bus.ask(kind, body)
        if answer is None:
            return None
        if answer.truncated:
            return await rebuild()
        response = self._methods[method][2]()
        response.ParseFromString(base64.b64decode(answer.result["q"]))
        return response

    # --- answering ---------------------------------------------------------------

    async def _serve(self, body: dict[str, Any], holds: Callable[[str], bool]) -> dict[str, Any] | None:
        entry = self._methods.get(str(body.get("m", "")))
        target = str(body.get("t", ""))
        if entry is None:
            return None
        if not holds(target):
            take_back = getattr(self.engine, "take_back", None)
            if holds != self.holds_task or take_back is None:
                return None
            # Given up here a moment ago: once released, a task still marked leaving from here (not let go
            # yet) is taken back and the call served here, as the asker could not claim it; any other
            # task is the asker's to claim.
            if not await take_back(target):
                return None
        method, request_cls, _ = entry
        request = request_cls()
        request.ParseFromString(base64.b64decode(str(body["q"])))
        # The handler runs in its own task: these belong to this call alone.
        principal_var.set(str(body["p"]))
        caller_var.set(_decode_caller(dict(body.get("c") or {})))
        forwarded_var.set(True)
        response = await method(request, None)
        return {"q": base64.b64encode(response.SerializeToString()).decode()}
