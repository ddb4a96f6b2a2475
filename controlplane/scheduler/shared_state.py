"""Shared state: the per-task key-value store agents read and write (compare-and-set by version).

Served on an agent's stream for the task of an assignment the agent holds (the
agent side checks that); every operation is answered, whatever happened.
"""

from __future__ import annotations

import logging

from controlplane.errors import MaosError
from controlplane.scheduler.commands import StateReply
from controlplane.scheduler.sessions import AgentSession
from controlplane.storage.executor import StorageExecutor

log = logging.getLogger(__name__)

MAX_STATE_KEY = 256
MAX_STATE_VALUE = 1024 * 1024


async def serve_shared_state(
    storage: StorageExecutor,
    session: AgentSession,
    request_id: int,
    task_id: str,
    op: str,
    key: str,
    value: bytes = b"",
    expected_version: int | None = None,
) -> None:
    """Serve one shared-state operation on task ``task_id`` and send the agent its StateReply."""
    if not 1 <= len(key) <= MAX_STATE_KEY or len(value) > MAX_STATE_VALUE:
        session.send(
            StateReply(
                request_id,
                error="ERROR_REASON_INVALID_FIELD",
                message=f"keys are 1-{MAX_STATE_KEY} characters and values at most {MAX_STATE_VALUE} bytes",
            )
        )
        return
    backend = storage.backend
    try:
        if op == "get":
            found = await storage.call(backend.state_get, task_id, key)
            reply = StateReply(
                request_id,
                found=found is not None,
                value=found.value if found else b"",
                version=found.version if found else 0,
            )
        elif op == "put":
            version = await storage.call(backend.state_put, task_id, key, value, expected_version)
            reply = StateReply(request_id, found=True, value=value, version=version)
        else:
            existed = await storage.call(backend.state_delete, task_id, key, expected_version)
            reply = StateReply(request_id, found=existed)
    except MaosError as exc:
        reply = StateReply(
            request_id,
            error=exc.reason,
            message=exc.message,
            version=int(exc.metadata.get("actual_version", 0)),
        )
    except Exception:  # the agent must get an answer whatever happened
        log.exception("shared state %s of %r failed", op, key)
        reply = StateReply(
            request_id, error="ERROR_REASON_INTERNAL", message="internal error; see the server log"
        )
    session.send(reply)
