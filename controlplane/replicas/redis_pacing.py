"""The model pacer's state in Redis, so every replica paces the same buckets and breaker.

Each model's :class:`~controlplane.domain.model_limits.ModelPacing` is one JSON value
(``<prefix>pacing:<model>``; the models in ``<prefix>pacing:models``). A change
(:meth:`RedisPacingStore.transact`) reads it under ``WATCH``, applies the pacer's change and
writes it in ``MULTI``/``EXEC``, again on fresher state if another replica wrote meanwhile, so
no grant or outcome is lost between replicas. Times in the state are wall-clock seconds (the
pacer uses ``time.time`` with a shared store). How many calls wait (``held``) is each replica's
own figure.

While Redis does not answer, this replica paces on its own copy of the last state it saw (and
says so in the log once a minute); the next change after Redis is back starts from Redis' state.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

from controlplane.domain.model_limits import (
    BreakerPolicy,
    BreakerState,
    ModelPacing,
    RateLimits,
    _Permit,
)
from controlplane.replicas.redis_conn import AWAY

log = logging.getLogger(__name__)

_R = TypeVar("_R")
#: Attempts of a change that other replicas keep changing under it, before it is applied locally.
MAX_ATTEMPTS = 20
WARN_EVERY = 60.0


def dump(pacing: ModelPacing) -> str:
    """The shared part of a model's state as JSON (not ``held``, not the policy: those are local)."""
    return json.dumps(
        {
            "configured": list(_limits(pacing.configured)),
            "learned": list(_limits(pacing.learned)),
            "state": int(pacing.state),
            "open_until": pacing.open_until,
            "cooldown": pacing.cooldown,
            "failures": pacing.failures,
            "window": pacing.window,
            "buckets": {name: [b.level, b.updated] for name, b in pacing.buckets.items()},
            "permits": {
                pid: [p.input_tokens, p.output_tokens, p.expires, p.epoch]
                for pid, p in pacing.permits.items()
            },
            "openings": pacing.openings,
            "granted": pacing.granted,
            "overloaded_answers": pacing.overloaded_answers,
            "last_problem": pacing.last_problem,
        },
        separators=(",", ":"),
    )


def load(pacing: ModelPacing, text: str | bytes) -> None:
    """Set ``pacing``'s shared part from :func:`dump`'s JSON (its ``held`` and policy stay)."""
    data = json.loads(text)
    pacing.configured = RateLimits(*data["configured"])
    pacing.learned = RateLimits(*data["learned"])
    pacing.state = BreakerState(data["state"])
    pacing.open_until = float(data["open_until"])
    pacing.cooldown = float(data["cooldown"])
    pacing.failures = int(data["failures"])
    pacing.window = data["window"]
    for name, (level, updated) in data["buckets"].items():
        bucket = pacing.buckets.get(name)
        if bucket is not None:
            bucket.level, bucket.updated = level, float(updated)
    pacing.permits = {
        pid: _Permit(int(i), int(o), float(e), int(ep)) for pid, (i, o, e, ep) in data["permits"].items()
    }
    pacing.openings = int(data["openings"])
    pacing.granted = int(data["granted"])
    pacing.overloaded_answers = int(data["overloaded_answers"])
    pacing.last_problem = str(data["last_problem"])


def _limits(limits: RateLimits) -> tuple[int, int, int]:
    return (limits.requests_per_minute, limits.input_tokens_per_minute, limits.output_tokens_per_minute)


class RedisPacingStore:
    """:class:`~controlplane.pacing.PacingStore` in Redis (see the module docstring).

    Args:
        client: A synchronous ``redis.Redis`` (``RedisConnection.sync``: short timeouts).
        prefix: The key prefix (``redis.key_prefix``).
        policy: The breaker's policy (for states made from what Redis holds).
    """

    shared = True

    def __init__(self, client: Any, prefix: str, policy: BreakerPolicy | None = None):
        self.client = client
        self.prefix = prefix
        self.policy = policy or BreakerPolicy()
        self._local: dict[str, ModelPacing] = {}
        self._warned = 0.0
        self._away_until = 0.0

    def _key(self, model: str) -> str:
        return f"{self.prefix}pacing:{model}"

    def _away(self) -> bool:
        """Whether Redis failed a moment ago (then this replica's copy serves, without trying)."""
        return time.monotonic() < self._away_until

    def _degraded(self, exc: Exception) -> None:
        now = time.monotonic()
        self._away_until = now + AWAY
        if now - self._warned >= WARN_EVERY:
            self._warned = now
            log.warning(
                "model pacing: Redis does not answer (%s); this replica paces on its own meanwhile", exc
            )

    def _mirror(self, model: str, text: str | bytes) -> ModelPacing:
        pacing = self._local.get(model)
        if pacing is None:
            pacing = self._local[model] = ModelPacing(model, RateLimits(), self.policy, time.time())
        load(pacing, text)
        return pacing

    def _copy(self, local: ModelPacing, text: str | bytes) -> ModelPacing:
        """A new state of ``local``'s model, policy and ``held``, with the shared part from ``text``."""
        pacing = ModelPacing(local.model, local.configured, local.policy, time.time())
        pacing.held = local.held
        load(pacing, text)
        return pacing

    def get(self, model: str) -> ModelPacing | None:
        """The state of ``model`` as Redis holds it now (this replica's copy while Redis is away)."""
        import redis

        if self._away():
            return self._local.get(model)
        try:
            text = self.client.get(self._key(model))
        except redis.RedisError as exc:
            self._degraded(exc)
            return self._local.get(model)
        if text is None:  # not created yet (or Redis was emptied): made anew by the pacer
            return None
        return self._mirror(model, text)

    def put(self, model: str, pacing: ModelPacing) -> None:
        """Store a new model's state, unless another replica stored one first (then that one counts)."""
        import redis

        self._local[model] = pacing
        if self._away():
            return
        try:
            with self.client.pipeline(transaction=True) as pipe:
                pipe.set(self._key(model), dump(pacing), nx=True)
                pipe.sadd(f"{self.prefix}pacing:models", model)
                created, _ = pipe.execute()
            if not created:
                text = self.client.get(self._key(model))
                if text is not None:
                    load(pacing, text)
        except redis.RedisError as exc:
            self._degraded(exc)

    def models(self) -> list[str]:
        """The models with state (every replica's)."""
        import redis

        if self._away():
            return sorted(self._local)
        try:
            names = {
                m.decode() if isinstance(m, bytes) else m
                for m in self.client.smembers(f"{self.prefix}pacing:models")
            }
        except redis.RedisError as exc:
            self._degraded(exc)
            names = set()
        return sorted(names | set(self._local))

    def transact(self, model: str, change: Callable[[ModelPacing], _R]) -> _R:
        """Apply ``change`` to the latest state of ``model`` atomically (again if another replica won)."""
        import redis

        key = self._key(model)
        if self._away():
            return change(self._local[model])
        try:
            for _ in range(MAX_ATTEMPTS):
                with self.client.pipeline(transaction=True) as pipe:
                    try:
                        pipe.watch(key)
                        text = pipe.get(key)
                        local = self._local[model]
                        # The change runs on a copy: this replica's own copy takes it only once Redis
                        # did, so a failed or retried attempt never applies it twice here.
                        pacing = self._copy(local, text if text is not None else dump(local))
                        result = change(pacing)
                        pipe.multi()
                        pipe.set(key, dump(pacing))
                        pipe.sadd(f"{self.prefix}pacing:models", model)
                        pipe.execute()
                        load(local, dump(pacing))
                        return result
                    except redis.WatchError:
                        continue
            log.warning(
                "model pacing of %s: %d replicas' changes in a row; applied here only", model, MAX_ATTEMPTS
            )
        except redis.RedisError as exc:
            self._degraded(exc)
        return change(self._local[model])


def shared_pacing(redis: Any) -> dict[str, Any]:
    """The keyword arguments of ``Pacer.from_settings`` sharing the state through ``redis``
    (a :class:`~controlplane.replicas.redis_conn.RedisConnection`, or None: nothing shared)."""
    if redis is None:
        return {}
    import secrets

    return {"store": RedisPacingStore(redis.sync, redis.prefix), "id_prefix": secrets.token_hex(3)}
