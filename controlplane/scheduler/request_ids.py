"""Looking up request ids in storage, many at once.

A call carrying a ``request_id`` that the control plane's memory does not hold
must be looked up in storage (the id may come from before a restart, or from
another replica). One storage call per request made the storage thread and the
hand-offs to it most of the cost of a submit with a request id (issue 16); here
the lookups that arrive while one is running wait for the next, which takes
them all in a single storage call (as the committer groups writes).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from controlplane.storage.base import IdempotencyRecord
from controlplane.storage.executor import StorageExecutor

Key = tuple[str, str, str]
#: Most request ids looked up in one storage call.
MAX_LOOKUP = 500


class RequestIdLookups:
    """Coalesces concurrent idempotency lookups into one storage call each round."""

    def __init__(self, storage: StorageExecutor):
        self.storage = storage
        #: Lookups waiting for the next round: key -> the futures of the callers asking.
        self._waiting: dict[Key, list[asyncio.Future[IdempotencyRecord | None]]] = {}
        self._runner: asyncio.Task[None] | None = None
        #: Storage calls made so far (for tests and tuning).
        self.rounds = 0

    async def get(self, principal: str, method: str, request_id: str) -> IdempotencyRecord | None:
        """The stored record of an earlier call with that request id, or None."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[IdempotencyRecord | None] = loop.create_future()
        self._waiting.setdefault((principal, method, request_id), []).append(future)
        if self._runner is None:
            self._runner = loop.create_task(self._run())
        return await future

    async def _run(self) -> None:
        try:
            await asyncio.sleep(0)  # lookups arriving in the same pass join the first round
            while self._waiting:
                keys = list(self._waiting)[:MAX_LOOKUP]
                batch = {key: self._waiting.pop(key) for key in keys}
                self.rounds += 1
                try:
                    found = await self.storage.call(self._lookup, keys)
                except asyncio.CancelledError:  # shutting down: no caller waits for ever
                    for futures in [*batch.values(), *self._waiting.values()]:
                        for future in futures:
                            future.cancel()
                    self._waiting.clear()
                    raise
                except Exception as exc:  # storage down: each caller gets the error, as before
                    for futures in batch.values():
                        for future in futures:
                            if not future.done():
                                future.set_exception(exc)
                    continue
                for key, futures in batch.items():
                    for future in futures:
                        if not future.done():
                            future.set_result(found.get(key))
        finally:
            self._runner = None

    def _lookup(self, keys: Sequence[Key]) -> dict[Key, IdempotencyRecord]:
        """On the storage thread: the records among ``keys``, in one statement where the backend can."""
        backend = self.storage.backend
        bulk = getattr(backend, "get_idempotency_records", None)
        if bulk is not None:
            return dict(bulk(keys))
        found = {}
        for key in keys:  # a backend with the core store alone: one query each, still one hand-off
            record = backend.get_idempotency(*key)
            if record is not None:
                found[key] = record
        return found
