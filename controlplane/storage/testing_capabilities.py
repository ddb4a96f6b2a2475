"""The contracts of the optional storage capabilities: access records, join tokens, checkpoints, the audit log.

A backend offering a capability adds its contract to :class:`~controlplane.storage.testing.StorageContract`
in its test module, with the same ``backend`` fixture (a migrated, empty backend per test)::

    class TestMyBackend(StorageContract, AccessContract, JoinTokenContract):
        pass

Each contract first checks that the backend offers the capability's Protocol
(:mod:`controlplane.storage.base`), then how it behaves. A backend without a
capability leaves its contract out; the control plane then refuses what needs it
with FAILED_PRECONDITION (see the capability's docstring).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import pytest

from controlplane.domain.model import TaskStatus
from controlplane.errors import Aborted, AlreadyExists, FailedPrecondition
from controlplane.storage.base import (
    PrunesAudit,
    StateValue,
    StoresAccess,
    StoresAudit,
    StoresCheckpoints,
    StoresJoinTokens,
    WriteBatch,
)
from controlplane.storage.records import CheckpointRecord, JoinTokenRecord
from controlplane.storage.testing import _T0, full_agent, full_subtask, full_task, minimal_task


def _token(token_id: str, *, max_uses: int) -> JoinTokenRecord:
    """A join token made at ``_T0``, valid for 100 seconds, not yet used."""
    return JoinTokenRecord(
        id=token_id,
        digest="d" * 64,
        agent_types=(),
        max_uses=max_uses,
        uses=0,
        create_time=_T0,
        expire_time=_T0 + 100,
    )


class AccessContract:
    """Users, roles and API keys (:class:`~controlplane.storage.base.StoresAccess`)."""

    def test_offers_stores_access(self, backend: Any) -> None:
        assert isinstance(backend, StoresAccess)

    def test_access_records_put_list_delete(self, backend: Any) -> None:
        user = {"email": "a@example.com", "roles": ["viewer"], "disabled": False, "create_time": _T0}
        backend.access_put("users", "a", user, create=True)
        backend.access_put("users", "b", {**user, "email": "b@example.com"})
        with pytest.raises(AlreadyExists):
            backend.access_put("users", "a", user, create=True)
        backend.access_put("users", "a", {**user, "roles": [], "disabled": True})  # upsert
        backend.access_put("roles", "r", {"permissions": ["task:view"], "description": "", "builtin": False})
        backend.access_put("api_keys", "k1", {"user": "a", "digest": "ab", "revoke_time": None})
        assert backend.access_list("users") == [
            {**user, "id": "a", "roles": [], "disabled": True},
            {**user, "id": "b", "email": "b@example.com"},
        ]
        assert [r["id"] for r in backend.access_list("roles")] == ["r"]
        assert backend.access_list("api_keys") == [
            {"id": "k1", "user": "a", "digest": "ab", "revoke_time": None}
        ]
        assert backend.access_delete("users", "a") and not backend.access_delete("users", "a")
        assert backend.access_delete("roles", "r") and not backend.access_delete("roles", "nope")
        assert [r["id"] for r in backend.access_list("users")] == ["b"] and backend.access_list("roles") == []
        assert [r["id"] for r in backend.access_list("api_keys")] == ["k1"]  # keys are not deleted with users
        backend.access_put("users", "a", user, create=True)  # the id is free again
        assert [r["id"] for r in backend.access_list("users")] == ["a", "b"]


class JoinTokenContract:
    """Join tokens (:class:`~controlplane.storage.base.StoresJoinTokens`)."""

    def test_offers_stores_join_tokens(self, backend: Any) -> None:
        assert isinstance(backend, StoresJoinTokens)

    def test_join_token_round_trip_and_listing(self, backend: Any) -> None:
        open_one = JoinTokenRecord(
            id="abc123",
            digest="d" * 64,
            agent_types=(),
            max_uses=0,
            uses=0,
            create_time=_T0,
            expire_time=_T0 + 86400,
        )
        typed = JoinTokenRecord(
            id="zzz999",
            digest="e" * 64,
            agent_types=("researcher", "coder"),
            max_uses=3,
            uses=0,
            create_time=_T0 - 1,
            expire_time=_T0 + 60,
        )
        backend.put_join_token(open_one)
        backend.put_join_token(typed)
        with pytest.raises(AlreadyExists):
            backend.put_join_token(dataclasses.replace(open_one, digest="f" * 64))
        assert backend.get_join_token("abc123") == open_one
        assert backend.get_join_token("zzz999") == typed
        assert backend.get_join_token("nope00") is None
        assert backend.list_join_tokens() == [typed, open_one]  # oldest first

    def test_join_token_uses_are_counted_only_while_valid(self, backend: Any) -> None:
        backend.put_join_token(_token("twice1", max_uses=2))
        first = backend.use_join_token("twice1", _T0 + 1)
        assert first is not None and first.uses == 1
        assert backend.use_join_token("twice1", _T0 + 100) is None  # expired at that time
        second = backend.use_join_token("twice1", _T0 + 2)
        assert second is not None and second.uses == 2
        assert backend.use_join_token("twice1", _T0 + 3) is None  # used up
        assert backend.use_join_token("nope00", _T0) is None
        stored = backend.get_join_token("twice1")
        assert stored is not None and stored.uses == 2

        backend.put_join_token(_token("many00", max_uses=0))
        for expected in range(1, 6):  # 0: unlimited
            counted = backend.use_join_token("many00", _T0)
            assert counted is not None and counted.uses == expected

    def test_revoked_join_token_is_not_counted(self, backend: Any) -> None:
        backend.put_join_token(_token("gone00", max_uses=0))
        revoked = backend.revoke_join_token("gone00", _T0 + 5)
        assert revoked is not None and revoked.revoke_time == _T0 + 5
        again = backend.revoke_join_token("gone00", _T0 + 9)
        assert again is not None and again.revoke_time == _T0 + 5  # the first revocation stands
        assert backend.revoke_join_token("nope00", _T0) is None
        assert backend.use_join_token("gone00", _T0 + 6) is None
        stored = backend.get_join_token("gone00")
        assert stored is not None and stored.uses == 0


#: The tables of the ``tasks`` component of a checkpoint.
TASK_TABLES = ("tasks", "subtasks", "shared_state")


def _snapshot(backend: Any, tables: tuple[str, ...]) -> list[tuple[str, list[str], list[Any]]]:
    """``(table, columns, rows)`` read by ``snapshot_blocks``, as ``restore_staged`` takes them."""
    return [(table, columns, list(rows)) for table, columns, _, rows in backend.snapshot_blocks(tables, 2)]


class CheckpointContract:
    """Checkpoints streamed in blocks and chunks, their records, and restores staged in the store
    (:class:`~controlplane.storage.base.StoresCheckpoints`)."""

    def test_offers_stores_checkpoints(self, backend: Any) -> None:
        assert isinstance(backend, StoresCheckpoints)

    @pytest.mark.parametrize("ordered", [False, True], ids=["staged", "merged"])
    def test_count_tasks_by_status_follows_a_restore(self, backend: Any, ordered: bool) -> None:
        backend.write(WriteBatch(tasks=[minimal_task("a", seq=1), minimal_task("b", seq=2)]))
        backend.write(
            WriteBatch(tasks=[minimal_task("a", seq=1, status=TaskStatus.RUNNING), minimal_task("b", seq=2)])
        )  # b written again, unchanged
        snap = _snapshot(backend, TASK_TABLES)
        backend.write(
            WriteBatch(
                tasks=[
                    minimal_task("a", seq=1, status=TaskStatus.COMPLETED),
                    minimal_task("b", seq=2, status=TaskStatus.FAILED),
                ]
            )
        )
        counts = backend.count_tasks_by_status()
        assert (counts[TaskStatus.PENDING], counts[TaskStatus.RUNNING]) == (0, 0)
        assert (counts[TaskStatus.COMPLETED], counts[TaskStatus.FAILED]) == (1, 1)
        backend.restore_staged(
            iter(snap), {"tasks": TASK_TABLES}, apply=True, ordered=ordered
        )  # the counts follow
        counts = backend.count_tasks_by_status()
        assert (counts[TaskStatus.PENDING], counts[TaskStatus.RUNNING], counts[TaskStatus.COMPLETED]) == (
            1,
            1,
            0,
        )
        assert sum(counts.values()) == 2

    def test_snapshot_blocks_are_bounded_and_ordered_by_key(self, backend: Any) -> None:
        backend.write(WriteBatch(tasks=[minimal_task(f"t{i}", seq=i + 1) for i in (4, 0, 3, 1, 2)]))
        backend.state_put("t0", "k", b"\x00\x01", None)
        blocks = list(backend.snapshot_blocks(["tasks", "agents", "shared_state"], 2))
        assert [(table, len(rows)) for table, _, _, rows in blocks] == [
            ("tasks", 2),
            ("tasks", 2),
            ("tasks", 1),
            ("agents", 0),  # a table with no rows gives one empty block
            ("shared_state", 1),
        ]
        table, columns, binary, _ = blocks[0]
        ids = [row[columns.index("id")] for _, _, _, rows in blocks[:3] for row in rows]
        assert ids == ["t0", "t1", "t2", "t3", "t4"]
        assert binary == [] and "id" in columns
        _, columns, binary, rows = blocks[-1]
        assert binary and set(binary) <= set(columns)
        assert bytes(rows[0][columns.index(binary[0])]) == b"\x00\x01"

    def test_chunks_are_read_back_in_order_and_dropped(self, backend: Any) -> None:
        chunks = [bytes([i]) * (i + 1) for i in range(20)]
        backend.put_checkpoint_chunks("cone", iter(chunks))
        backend.put_checkpoint_chunks("ctwo", [b"other"])
        assert list(backend.checkpoint_chunks("cone")) == chunks
        backend.drop_checkpoint_chunks("cone")
        assert list(backend.checkpoint_chunks("cone")) == []
        assert list(backend.checkpoint_chunks("ctwo")) == [b"other"]  # another take's chunks stay

    def test_a_chunked_checkpoint_is_stored_only_with_all_its_chunks(self, backend: Any) -> None:
        record = CheckpointRecord(
            id="cchunk", create_time=_T0, components=["tasks"], sha256="ab", compressed_size=8, payload=None
        )
        backend.put_checkpoint_chunks("cchunk", [b"1234"])
        with pytest.raises(Aborted):
            backend.put_checkpoint(record)  # 4 of 8 bytes
        assert backend.get_checkpoint("cchunk") is None
        backend.drop_checkpoint_chunks("cchunk")
        backend.put_checkpoint_chunks("cchunk", [b"1234", b"5678"])
        backend.put_checkpoint_chunks("cnext", [b"x"])  # a later take does not remove them
        backend.put_checkpoint(record)
        stored = backend.get_checkpoint("cchunk", with_payload=True)
        assert stored is not None and stored.payload == b"12345678" and stored.compressed_size == 8
        assert list(backend.checkpoint_chunks("cchunk")) == [b"1234", b"5678"]
        assert backend.delete_checkpoint("cchunk")
        assert list(backend.checkpoint_chunks("cchunk")) == []

    @pytest.mark.parametrize("ordered", [False, True], ids=["staged", "merged"])
    def test_restore_staged_compares_then_applies(self, backend: Any, ordered: bool) -> None:
        backend.write(
            WriteBatch(
                tasks=[full_task("ta", seq=1), minimal_task("tb", seq=2)],
                subtasks=[full_subtask("ta", "merge")],
                agents=[full_agent()],
            )
        )
        backend.state_put("ta", "k", b"\x00\x01", None)
        snap = _snapshot(backend, (*TASK_TABLES, "agents"))
        components = {"tasks": TASK_TABLES, "agents": ("agents",)}
        backend.write(WriteBatch(tasks=[full_task("ta", seq=1, description="changed")]))
        backend.write(WriteBatch(tasks=[minimal_task("tc", seq=3)]))  # later than the snapshot
        changed = backend.get_task("ta")
        verified = backend.restore_staged(iter(snap), components, apply=False, ordered=ordered)
        assert verified.changes == {"tasks": (0, 1, 1), "agents": (0, 0, 1)}
        assert verified.later_tasks == ["tc"]
        assert backend.get_task("ta") == changed  # compared only
        applied = backend.restore_staged(iter(snap), {"tasks": TASK_TABLES}, apply=True, ordered=ordered)
        assert applied.changes == {"tasks": (0, 1, 1)} and applied.later_tasks == ["tc"]
        assert backend.get_task("ta") == full_task("ta", seq=1)
        assert backend.get_subtasks("ta") == [full_subtask("ta", "merge")]
        assert backend.state_get("ta", "k") == StateValue(b"\x00\x01", 1)
        assert backend.get_task("tc") is not None  # rows not in the checkpoint are kept

    @pytest.mark.parametrize("ordered", [False, True], ids=["staged", "merged"])
    def test_restore_staged_refused_midway_changes_nothing(self, backend: Any, ordered: bool) -> None:
        backend.write(WriteBatch(tasks=[minimal_task("ta", seq=1)]))
        snap = _snapshot(backend, TASK_TABLES)
        backend.write(WriteBatch(tasks=[minimal_task("ta", seq=1, status=TaskStatus.FAILED)]))
        changed = backend.get_task("ta")

        def damaged() -> Iterator[tuple[str, list[str], list[Any]]]:
            yield from snap
            raise ValueError("checksum mismatch")

        for apply in (False, True):
            with pytest.raises(ValueError, match="checksum mismatch"):
                backend.restore_staged(damaged(), {"tasks": TASK_TABLES}, apply=apply, ordered=ordered)
        assert backend.get_task("ta") == changed

    @pytest.mark.parametrize("ordered", [False, True], ids=["staged", "merged"])
    def test_restore_moves_colliding_seq(self, backend: Any, ordered: bool) -> None:
        backend.write(WriteBatch(tasks=[minimal_task("later", seq=1)]))
        snap = [
            (table, columns, [tuple("old" if c == "id" else v for c, v in zip(columns, row, strict=True))])
            for table, columns, rows in _snapshot(backend, ("tasks",))
            for row in rows
        ]  # a checkpoint holding another task with the same seq
        backend.restore_staged(iter(snap), {"tasks": ("tasks",)}, apply=True, ordered=ordered)
        old, later = backend.get_task("old"), backend.get_task("later")
        assert old is not None and later is not None and old.seq == 1 and later.seq == 2
        assert backend.next_task_seq() == 2

    def test_merged_restore_counts_groups_as_staged(self, backend: Any) -> None:
        backend.write(
            WriteBatch(
                tasks=[minimal_task(f"t{i}", seq=i + 1) for i in range(6)],
                subtasks=[full_subtask(f"t{i}", "s") for i in range(5)] + [full_subtask("orphan", "s")],
            )
        )
        backend.state_put("t1", "k", b"v", None)
        tables: dict[str, tuple[list[str], list[dict[str, Any]]]] = {
            table: (columns, []) for table, columns, _ in _snapshot(backend, TASK_TABLES)
        }
        for table, _, rows in _snapshot(backend, TASK_TABLES):
            tables[table][1].extend(dict(zip(tables[table][0], row, strict=True)) for row in rows)
        tasks, subtasks, state = (tables[t][1] for t in TASK_TABLES)
        # The checkpoint: t0 differs; t5 is not in it (a later task); t9 and a subtask of t4 are only
        # in it; t1's state is not in it; t2's subtask differs; a subtask of a task that is nowhere
        # ("ghost") is only in it, one ("orphan") is equal on both sides.
        task = {row["id"]: row for row in tasks}
        sub = {row["task_id"]: row for row in subtasks}
        task["t0"]["priority"] += 1
        tasks.remove(task["t5"])
        tasks.append({**task["t1"], "id": "t9", "seq": 100})
        sub["t2"]["status"] += 1
        subtasks.append({**sub["t4"], "id": "extra"})
        subtasks.append({**sub["t0"], "task_id": "ghost"})
        assert len(state) == 1
        state.clear()
        snap = []
        for table in TASK_TABLES:
            columns, rows = tables[table]
            key = [c for c in columns if c in ("id", "task_id", "key")]
            key.sort(key=lambda c: c != "task_id")  # the key's columns in their order
            ordered = sorted(rows, key=lambda row: tuple(row[c] for c in key))
            snap.append((table, columns, [tuple(row[c] for c in columns) for row in ordered]))
        components = {"tasks": TASK_TABLES}
        staged = backend.restore_staged(iter(snap), components, apply=False)
        merged = backend.restore_staged(iter(snap), components, apply=False, ordered=True)
        # restored: t9, ghost; changed: t0, t1, t2, t4; unchanged: t3, orphan
        assert (staged.changes, merged.changes) == ({"tasks": (2, 4, 2)},) * 2
        assert staged.later_tasks == merged.later_tasks == ["t5"]
        applied = backend.restore_staged(iter(snap), components, apply=True, ordered=True)
        assert applied.changes == merged.changes
        again = backend.restore_staged(iter(snap), components, apply=False, ordered=True)
        # only t1 still differs (its state is kept); t5 is kept
        assert again.changes == backend.restore_staged(iter(snap), components, apply=False).changes
        assert again.changes == {"tasks": (0, 1, 7)} and again.later_tasks == ["t5"]
        t0, t9 = backend.get_task("t0"), backend.get_task("t9")
        assert t0 is not None and t0.priority == task["t0"]["priority"] and t9 is not None and t9.seq == 100
        assert sorted(s.id for s in backend.get_subtasks("t4")) == ["extra", "s"]
        assert [s.status for s in backend.get_subtasks("t2")] == [sub["t2"]["status"]]

    def test_merged_restore_refuses_rows_out_of_key_order(self, backend: Any) -> None:
        backend.write(WriteBatch(tasks=[minimal_task("ta", seq=1), minimal_task("tb", seq=2)]))
        snap = _snapshot(backend, ("tasks",))
        columns, reversed_rows = snap[0][1], [row for _, _, rows in snap for row in rows][::-1]
        backend.write(WriteBatch(tasks=[minimal_task("ta", seq=1, status=TaskStatus.FAILED)]))
        for apply in (False, True):
            with pytest.raises(FailedPrecondition, match="not in key order") as raised:
                backend.restore_staged(
                    iter([("tasks", columns, reversed_rows)]),
                    {"tasks": TASK_TABLES},
                    apply=apply,
                    ordered=True,
                )
            assert raised.value.reason == "ERROR_REASON_CHECKPOINT_CORRUPT"
        task = backend.get_task("ta")
        assert task is not None and task.status == TaskStatus.FAILED  # nothing written

    def test_checkpoint_records(self, backend: Any) -> None:
        for i in range(3):
            backend.put_checkpoint(
                CheckpointRecord(
                    id=f"c{i}",
                    create_time=_T0 + i,
                    components=["tasks"],
                    sha256="ab",
                    payload=bytes([i]) * 10,
                    automatic=i == 1,
                )
            )
        latest = backend.get_checkpoint("latest", with_payload=True)
        assert latest is not None and latest.id == "c2" and latest.payload == b"\x02" * 10
        one = backend.get_checkpoint("c1")
        assert one is not None and one.automatic and one.payload is None and one.components == ["tasks"]
        assert [r.id for r in backend.list_checkpoints(0, 10)] == ["c2", "c1", "c0"]
        assert [r.id for r in backend.list_checkpoints(1, 1)] == ["c1"]
        assert backend.delete_checkpoint("c2") and not backend.delete_checkpoint("c2")
        assert backend.get_checkpoint("c2") is None and backend.get_checkpoint("nope") is None


class AuditContract:
    """The audit log (:class:`~controlplane.storage.base.StoresAudit`), and its retention where the backend
    also offers :class:`~controlplane.storage.base.PrunesAudit`."""

    def test_offers_stores_audit(self, backend: Any) -> None:
        assert isinstance(backend, StoresAudit)

    def test_audit_records_written_in_a_batch_are_listed_with_filters(self, backend: Any) -> None:
        def record(n: int, principal: str, method: str, **extra: Any) -> dict[str, Any]:
            return {
                "id": f"r{n}",
                "time": _T0 + n,
                "principal": principal,
                "key_id": "",
                "peer": "ipv4:10.0.0.7",
                "method": method,
                "resource": f"tasks/t{n}",
                "decision": "ALLOW",
                "status_code": "OK",
                "request_id": "",
                "reason": "",
                **extra,
            }

        first = [
            record(0, "users/alice", "/maos.v1.TaskService/SubmitTask"),
            record(1, "users/bob", "/maos.v1.TaskService/CancelTask"),
            record(
                2,
                "",
                "/maos.v1.AgentGateway/Connect",
                decision="DENY",
                status_code="UNAUTHENTICATED",
                reason="ERROR_REASON_UNAUTHENTICATED",
                resource="<malformed>",
            ),
        ]
        backend.write(WriteBatch(audit=first))
        backend.write(
            WriteBatch(
                tasks=[minimal_task("t-audit")],
                audit=[record(3, "users/alice", "/maos.v1.TaskService/CancelTask")],
            )
        )

        listed = backend.list_audit()
        assert [r["id"] for r in listed] == ["r3", "r2", "r1", "r0"]  # newest first
        seqs = [r.pop("seq") for r in listed]
        assert seqs == sorted(seqs, reverse=True) and len(set(seqs)) == 4
        assert listed[1] == first[2] and listed[3] == first[0]  # stored as given, every field
        assert backend.get_task("t-audit") is not None  # the batch's other rows committed alongside

        def ids(**filters: Any) -> list[str]:
            return [r["id"] for r in backend.list_audit(**filters)]

        assert ids(principal="users/alice") == ["r3", "r0"]
        assert ids(principal="") == ["r3", "r2", "r1", "r0"]  # empty: no filter
        assert ids(action="CancelTask") == ["r3", "r1"]
        assert ids(action="AgentGateway/") == ["r2"]
        assert ids(action="%") == [] and ids(action="_") == []  # LIKE wildcards are escaped
        assert ids(since=_T0 + 1) == ["r3", "r2", "r1"]  # inclusive
        assert ids(until=_T0 + 2) == ["r1", "r0"]  # exclusive
        assert ids(since=_T0 + 1, until=_T0 + 3, principal="users/bob") == ["r1"]
        assert ids(limit=2) == ["r3", "r2"]
        assert ids(before_seq=seqs[1], limit=2) == ["r1", "r0"]  # keyset: the next page
        assert ids(before_seq=seqs[3]) == []

    def test_audit_retention_deletes_only_older_records(self, backend: Any) -> None:
        if not isinstance(pruning := backend, PrunesAudit):
            pytest.skip("the backend keeps every audit record (no PrunesAudit capability)")
        records = [
            {
                "id": f"old{n}",
                "time": _T0 + n,
                "principal": "users/alice",
                "key_id": "",
                "peer": "",
                "method": "/maos.v1.TaskService/SubmitTask",
                "resource": "",
                "decision": "ALLOW",
                "status_code": "OK",
                "request_id": "",
                "reason": "",
            }
            for n in range(5)
        ]
        backend.write(WriteBatch(audit=records))
        assert pruning.delete_audit_before(_T0 + 3) == 3
        assert [r["id"] for r in backend.list_audit()] == ["old4", "old3"]
        assert pruning.delete_audit_before(_T0 + 3) == 0
