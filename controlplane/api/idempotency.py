"""Idempotent calls: what makes a repeated ``request_id`` the same request.

A call that carries a ``request_id`` and comes again with the same id (from the same caller)
gets the first call's answer; with the same id and a different request it is refused with
:func:`controlplane.errors.request_id_reused`. Two stores keep the first answers: durable
records through the engine (SubmitTask, tasks from templates) and, for calls whose effect is
not stored (SpawnAgents' processes), the servicer's memory. Both compare
:func:`request_fingerprint`.
"""

from __future__ import annotations

import hashlib

from google.protobuf.message import Message


def request_fingerprint(request: Message) -> str:
    """A digest of a request without its ``request_id`` (equal for repeats of the same request)."""
    clone = type(request)()
    clone.CopyFrom(request)
    clone.ClearField("request_id")
    return hashlib.sha256(clone.SerializeToString(deterministic=True)).hexdigest()
