"""Several control planes on one database: the replica registry, job leases and the Redis parts.

* :mod:`.registry`: each control plane registers itself (id, address, version), heartbeats and
  deregisters on a clean stop; ``maos status`` lists the replicas, a silent one as lost.
* :mod:`.leases`: periodic jobs (audit retention, automatic checkpoints, the metrics history)
  run on one replica at a time under a lease row with a fencing token.
* :mod:`.sqlite_lock`: SQLite is the single-process default, so a second ``maos start`` on the
  same database file is refused.
* :mod:`.redis_conn`, :mod:`.redis_stores`, :mod:`.wakeups`: the Redis connection (``redis.url``)
  and what is shared through it.
"""
