"""Checkpoints streamed in blocks and chunks: tables over several lines, payloads over several chunks,
the restore staged in the database, and checkpoints stored whole before chunks still read."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, text

from controlplane.checkpoints import payload as codec
from controlplane.checkpoints import service
from controlplane.checkpoints.record import CheckpointRecord
from controlplane.domain.model import TaskStatus
from controlplane.errors import Aborted, FailedPrecondition
from controlplane.storage.base import WriteBatch
from controlplane.storage.sql import SqlBackendFactory, checkpoint_merge, checkpoint_stream, schema
from controlplane.storage.sql.backend import SqlBackend
from controlplane.storage.testing import full_task, minimal_subtask, minimal_task


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlBackend]:
    """A migrated, empty backend: a fresh SQLite file, or the truncated session PostgreSQL database."""
    if request.param == "sqlite":
        store = SqlBackendFactory().open(f"sqlite:///{tmp_path / 'maos.db'}")
        store.migrate()
    else:
        store = SqlBackendFactory().open(request.getfixturevalue("postgres_url"))
        store.migrate()
        with store.engine.begin() as conn:
            conn.execute(text(f"TRUNCATE {', '.join(t.name for t in schema.ALL_TABLES)}"))
    yield store
    store.close()


@pytest.fixture
def small_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Blocks of 3 rows and chunks of 64 bytes, so a few tasks span several lines and chunks."""
    monkeypatch.setattr(codec, "BLOCK_ROWS", 3)
    monkeypatch.setattr(codec, "CHUNK_BYTES", 64)


def _seed(backend: SqlBackend, n: int, start: int = 0) -> list[str]:
    ids = [f"t{i:03d}" for i in range(start, start + n)]
    backend.write(
        WriteBatch(
            tasks=[minimal_task(tid, seq=i + 1) for i, tid in enumerate(ids, start)],
            subtasks=[minimal_subtask(tid, "s1") for tid in ids],
        )
    )
    return ids


def _chunk_count(backend: SqlBackend, checkpoint_id: str) -> int:
    with backend.engine.connect() as conn:
        return conn.execute(
            text("SELECT count(*) FROM checkpoint_chunks WHERE checkpoint_id = :i"), {"i": checkpoint_id}
        ).scalar_one()


def test_blocks_and_chunks_round_trip(backend: SqlBackend, small_blocks: None) -> None:
    ids = _seed(backend, 10)
    record = service.take(backend)
    assert record is not None and record.task_count == 10 and record.format_version == "1"
    assert _chunk_count(backend, record.id) > 1
    stored = backend.get_checkpoint(record.id)
    assert stored is not None and stored.payload is None
    # Several lines per table, each checked, and the whole payload is what get_checkpoint joins.
    whole = backend.get_checkpoint(record.id, with_payload=True)
    assert whole is not None and codec.checksum(whole.payload or b"") == record.sha256
    decoded, parts = codec.iter_decode(backend.checkpoint_chunks(record.id), record.sha256, record.id)
    lines = [(table, len(r)) for table, _, r in parts]
    assert [n for table, n in lines if table == "tasks"] == [3, 3, 3, 1]
    assert decoded.task_count == 10 and decoded.content_sha256 == record.content_sha256

    # Change one task, delete another, add a later one: verify reports it and changes nothing.
    original, deleted = backend.get_task(ids[0]), backend.get_task(ids[1])
    backend.write(WriteBatch(tasks=[full_task(ids[0], seq=1)]))
    changed = backend.get_task(ids[0])
    assert changed != original
    with backend._writes.begin() as conn:
        conn.execute(text("DELETE FROM subtasks WHERE task_id = :i"), {"i": ids[1]})
        conn.execute(text("DELETE FROM tasks WHERE id = :i"), {"i": ids[1]})
    later = _seed(backend, 1, start=50)
    report = service.recover(backend, record, ["tasks"], verify_only=True, requeue_later=False)
    assert report.changes == {"tasks": (1, 1, 8)} and report.later_tasks == [f"tasks/{later[0]}"]
    assert backend.get_task(ids[1]) is None and backend.get_task(ids[0]) == changed

    report = service.recover(backend, record, ["tasks"], verify_only=False, requeue_later=False)
    assert report.applied and report.changes == {"tasks": (1, 1, 8)}
    assert backend.get_task(ids[1]) == deleted and backend.get_task(ids[0]) == original
    assert backend.get_task(later[0]) is not None  # later work is kept
    again = service.recover(backend, record, [], verify_only=True, requeue_later=False)
    assert again.changes["tasks"] == (0, 0, 10)


def test_a_restore_writes_back_a_group_changed_in_one_of_its_tables_only(backend: SqlBackend) -> None:
    """Only the rows that differ are written, from whichever table of a group they are in."""
    ids = _seed(backend, 3)
    record = service.take(backend)
    assert record is not None
    before = backend.get_subtasks(ids[1])
    with backend._writes.begin() as conn:
        conn.execute(text("UPDATE subtasks SET data = '{}' WHERE task_id = :i"), {"i": ids[1]})
    report = service.recover(backend, record, ["tasks"], verify_only=False, requeue_later=False)
    assert report.changes == {"tasks": (0, 1, 2)}
    assert backend.get_subtasks(ids[1]) == before
    again = service.recover(backend, record, [], verify_only=True, requeue_later=False)
    assert again.changes["tasks"] == (0, 0, 3)


def test_binary_and_float_columns_come_back_exactly(backend: SqlBackend) -> None:
    """Bytes (base64 in the payload) and floats survive the staging (binary COPY on PostgreSQL) as stored."""
    ids = _seed(backend, 2)
    blob = bytes(range(256)) * 3
    with backend._writes.begin() as conn:
        conn.execute(text("UPDATE subtasks SET checkpoint = :b WHERE task_id = :i"), {"b": blob, "i": ids[0]})
        conn.execute(
            text("INSERT INTO shared_state (task_id, key, value, version) VALUES (:i, 'k', :v, 7)"),
            {"i": ids[1], "v": b"\x00\xffstate"},
        )
        conn.execute(text("UPDATE tasks SET create_time = 1796536880.5748308 WHERE id = :i"), {"i": ids[1]})

    def stored() -> list[Any]:
        with backend.engine.connect() as conn:
            return [
                conn.execute(text(f"SELECT * FROM {t} ORDER BY 1, 2")).all()
                for t in ("tasks", "subtasks", "shared_state")
            ]

    before = stored()
    record = service.take(backend)
    assert record is not None
    with backend._writes.begin() as conn:
        conn.execute(text("UPDATE subtasks SET checkpoint = NULL"))
        conn.execute(text("UPDATE shared_state SET value = :v"), {"v": b"other"})
        conn.execute(text("UPDATE tasks SET create_time = 1.5"))
    report = service.recover(backend, record, ["tasks"], verify_only=False, requeue_later=False)
    assert report.changes == {"tasks": (0, 2, 0)}
    assert stored() == before
    again = service.recover(backend, record, [], verify_only=True, requeue_later=False)
    assert again.changes["tasks"] == (0, 0, 2)


def test_a_later_task_sharing_a_restored_seq_moves_after_the_highest(backend: SqlBackend) -> None:
    _seed(backend, 3)
    record = service.take(backend)
    assert record is not None
    with backend._writes.begin() as conn:
        conn.execute(text("DELETE FROM subtasks WHERE task_id = 't002'"))
        conn.execute(text("DELETE FROM tasks WHERE id = 't002'"))
    backend.write(WriteBatch(tasks=[minimal_task("t900", seq=3)]))  # the deleted task's seq, reused
    service.recover(backend, record, ["tasks"], verify_only=False, requeue_later=False)
    assert backend.get_task("t002").seq == 3  # type: ignore[union-attr]
    assert backend.get_task("t900").seq == 4  # type: ignore[union-attr]


def test_a_damaged_chunk_is_refused_and_nothing_changes(backend: SqlBackend, small_blocks: None) -> None:
    ids = _seed(backend, 6)
    record = service.take(backend)
    assert record is not None
    backend.write(WriteBatch(tasks=[full_task(ids[0], seq=1)]))
    changed = backend.get_task(ids[0])
    with backend._writes.begin() as conn:
        data = conn.execute(
            text("SELECT data FROM checkpoint_chunks WHERE checkpoint_id = :i AND seq = 1"), {"i": record.id}
        ).scalar_one()
        bad = bytearray(data)
        bad[len(bad) // 2] ^= 0xFF
        conn.execute(
            text("UPDATE checkpoint_chunks SET data = :d WHERE checkpoint_id = :i AND seq = 1"),
            {"d": bytes(bad), "i": record.id},
        )
    for verify in (True, False):
        with pytest.raises(FailedPrecondition) as err:
            service.recover(backend, record, [], verify_only=verify, requeue_later=False)
        assert err.value.reason == codec.CORRUPT
    assert backend.get_task(ids[0]) == changed  # not restored


def test_a_checkpoint_stored_whole_before_chunks_is_restored(backend: SqlBackend) -> None:
    """What the previous version stored: one line per table, the payload in ``checkpoints.payload``."""
    ids = _seed(backend, 4)
    data: dict[str, tuple[list[str], list[Any]]] = {}
    for table, columns, _, rows in backend.snapshot_blocks(service.tables_of(service.ALL_COMPONENTS), 100):
        data.setdefault(table, (columns, []))[1].extend(rows)
    encoded = codec.encode(data, service.ALL_COMPONENTS, 1.0)
    old = CheckpointRecord(
        id="cold",
        create_time=1.0,
        size=encoded.size,
        compressed_size=len(encoded.compressed),
        sha256=encoded.sha256,
        content_sha256=encoded.content_sha256,
        components=list(service.ALL_COMPONENTS),
        task_count=encoded.task_count,
        format_version=codec.FORMAT_VERSION,
        payload=encoded.compressed,
    )
    backend.put_checkpoint(old)
    assert _chunk_count(backend, "cold") == 0
    original = backend.get_task(ids[0])
    backend.write(WriteBatch(tasks=[full_task(ids[0], seq=1)]))
    record = backend.get_checkpoint("cold")
    assert record is not None
    report = service.recover(backend, record, ["tasks"], verify_only=False, requeue_later=False)
    assert report.changes == {"tasks": (0, 1, 3)}
    assert backend.get_task(ids[0]) == original


def test_chunks_go_with_their_checkpoint_and_orphans_with_the_next(backend: SqlBackend) -> None:
    _seed(backend, 2)
    backend.put_checkpoint_chunks("corphan", [b"left by a crash"])  # never got its checkpoint row
    backend.put_checkpoint_chunks("cyoung", [b"a take in progress"])
    with backend._writes.begin() as conn:
        conn.execute(
            text("UPDATE checkpoint_chunks SET create_time = :t WHERE checkpoint_id = 'corphan'"),
            {"t": time.time() - checkpoint_stream.ORPHAN_AGE_S - 60},
        )
    record = service.take(backend)
    assert record is not None
    assert _chunk_count(backend, "corphan") == 0 and _chunk_count(backend, record.id) >= 1
    assert _chunk_count(backend, "cyoung") == 1  # younger than the bound: kept
    backend.drop_checkpoint_chunks("cyoung")
    # An automatic checkpoint of unchanged state is skipped and leaves no chunks.
    assert service.take(backend, automatic=True, skip_unchanged=True) is None
    with backend.engine.connect() as conn:
        assert (
            conn.execute(text("SELECT count(DISTINCT checkpoint_id) FROM checkpoint_chunks")).scalar_one()
            == 1
        )
    assert backend.delete_checkpoint(record.id)
    assert _chunk_count(backend, record.id) == 0


@pytest.mark.parametrize("ordered", [False, True], ids=["staged", "merged"])
def test_a_failed_restore_leaves_no_sqlite_connection_with_its_staged_tables(
    tmp_path: Path, ordered: bool
) -> None:
    """A pooled connection that staged a restore is closed (its temporary file with it), not returned to
    the pool with staged tables or the larger temp page cache: the next one handed out is clean."""
    backend = SqlBackendFactory().open(f"sqlite:///{tmp_path / 'maos.db'}")
    try:
        backend.migrate()
        _seed(backend, 2)
        returned: list[tuple[int, list[str]]] = []

        def state(dbapi_connection: Any) -> tuple[int, list[str]]:
            size = dbapi_connection.execute("PRAGMA temp.cache_size").fetchone()[0]
            names = [r[0] for r in dbapi_connection.execute("SELECT name FROM temp.sqlite_master")]
            return size, names

        def on_checkin(dbapi_connection: Any, _record: Any) -> None:
            if dbapi_connection is not None:  # None: discarded
                returned.append(state(dbapi_connection))

        def parts() -> Iterator[tuple[str, list[str], list[Any]]]:
            columns = [c.name for c in schema.tasks.columns]
            yield "tasks", columns, []
            raise ValueError("damaged")

        event.listen(backend.engine, "checkin", on_checkin)  # the writes engine shares its pool
        for apply in (True, False):
            returned.clear()
            with pytest.raises(ValueError, match="damaged"):
                backend.restore_staged(parts(), {"tasks": ("tasks",)}, apply=apply, ordered=ordered)
            assert returned == []
            with backend.engine.connect() as conn:
                size, names = state(conn.connection.dbapi_connection)
                assert size != -checkpoint_stream.TEMP_CACHE_KIB and names == []
    finally:
        backend.close()


@pytest.mark.parametrize("ordered", [False, True], ids=["staged", "merged"])
def test_a_restore_in_memory_keeps_its_one_connection_clean(ordered: bool) -> None:
    """SQLite in memory has one connection, which is kept: it comes back without staged tables and with
    the default temp page cache, after a restore that failed or one that was applied."""
    backend = SqlBackendFactory().open("sqlite:///:memory:")
    try:
        backend.migrate()
        _seed(backend, 2)

        blocks = [(t, c, [list(r) for r in rows]) for t, c, _, rows in backend.snapshot_blocks(["tasks"], 10)]

        def parts(fail: bool) -> Iterator[tuple[str, list[str], list[Any]]]:
            yield from blocks
            if fail:
                raise ValueError("damaged")

        for apply, fail in ((True, True), (False, True), (True, False)):
            if fail:
                with pytest.raises(ValueError, match="damaged"):
                    backend.restore_staged(parts(fail), {"tasks": ("tasks",)}, apply=apply, ordered=ordered)
            else:
                staged = backend.restore_staged(
                    parts(fail), {"tasks": ("tasks",)}, apply=apply, ordered=ordered
                )
                assert staged.changes["tasks"] == (0, 0, 2)
            with backend.engine.connect() as conn:
                driver = conn.connection.dbapi_connection
                assert driver.execute("PRAGMA temp.cache_size").fetchone()[0] == (
                    -checkpoint_stream.DEFAULT_TEMP_CACHE_KIB
                )
                assert driver.execute("SELECT name FROM temp.sqlite_master").fetchall() == []
    finally:
        backend.close()


def test_interleaved_takes_keep_each_others_chunks(backend: SqlBackend, small_blocks: None) -> None:
    """Take A writes its chunks; take B (another replica, an offline recovery) starts; A's row follows."""
    _seed(backend, 5)
    taking: dict[str, list[bytes]] = {}

    def put_chunks(checkpoint_id: str, chunks: Iterator[bytes]) -> None:
        taking[checkpoint_id] = list(chunks)
        SqlBackend.put_checkpoint_chunks(backend, checkpoint_id, taking[checkpoint_id])
        if len(taking) == 1:  # A's chunks are written, its row not yet: B takes its own meanwhile
            b = service.take(backend)
            assert b is not None
            taking["b"] = [b.id.encode()]

    backend.put_checkpoint_chunks = put_chunks  # type: ignore[method-assign]
    a = service.take(backend)
    assert a is not None and len(taking) == 3
    del backend.put_checkpoint_chunks
    assert _chunk_count(backend, a.id) == len(taking[a.id]) > 1
    for record in (a, backend.get_checkpoint(taking["b"][0].decode())):
        assert record is not None
        report = service.recover(backend, record, [], verify_only=True, requeue_later=False)
        assert report.changes["tasks"] == (0, 0, 5)


def test_a_checkpoint_whose_chunks_are_not_all_stored_is_refused(backend: SqlBackend) -> None:
    record = CheckpointRecord(
        id="cpart", create_time=1.0, components=["tasks"], sha256="ab", compressed_size=9, payload=None
    )
    refusals = []
    for chunks in ([], [b"1234"], [b"12345678"], [b"12345", b"6789"]):
        backend.put_checkpoint_chunks("cpart", chunks)
        if len(chunks) == 2:  # all bytes, but a chunk missing in the middle
            with backend._writes.begin() as conn:
                conn.execute(text("UPDATE checkpoint_chunks SET seq = 2 WHERE seq = 1"))
        with pytest.raises(Aborted) as err:
            backend.put_checkpoint(record)
        refusals.append(err.value.message)
        assert err.value.reason == codec.CORRUPT and "take the checkpoint again" in err.value.message
        assert backend.get_checkpoint("cpart") is None
        backend.drop_checkpoint_chunks("cpart")
    assert "0 payload chunk(s) of 0 bytes" in refusals[0] and "1 payload chunk(s) of 4 bytes" in refusals[1]
    backend.put_checkpoint_chunks("cpart", [b"12345", b"6789"])
    backend.put_checkpoint(record)
    stored = backend.get_checkpoint("cpart", with_payload=True)
    assert stored is not None and stored.payload == b"123456789"


@pytest.mark.postgres
@pytest.mark.parametrize("taken", ["merged", "staged"])
def test_a_checkpoint_taken_on_sqlite_restores_into_postgresql(
    tmp_path: Path, postgres_url: str, taken: str
) -> None:
    """SQLite's values (JSON in the payload) fit PostgreSQL's column types, staged by binary COPY: bytes,
    doubles, big integers and NULLs come back exactly, whether the payload is merged in key order or
    (taken before that order) staged whole."""
    source = SqlBackendFactory().open(f"sqlite:///{tmp_path / 'maos.db'}")
    target = SqlBackendFactory().open(postgres_url)
    try:
        source.migrate()
        target.migrate()
        with target.engine.begin() as conn:
            conn.execute(text(f"TRUNCATE {', '.join(t.name for t in schema.ALL_TABLES)}"))
        ids = _seed(source, 3)
        with source._writes.begin() as conn:
            conn.execute(
                text("UPDATE subtasks SET checkpoint = :b WHERE task_id = :i"),
                {"b": b"\x00\xff" * 9, "i": ids[0]},
            )
            conn.execute(
                text("INSERT INTO shared_state (task_id, key, value, version) VALUES (:i, 'k', :v, :n)"),
                {"i": ids[1], "v": b"\x00state", "n": 2**40},
            )
            conn.execute(
                text("UPDATE tasks SET create_time = 1796536880.5748308 WHERE id = :i"), {"i": ids[2]}
            )
        if taken == "merged":
            record = service.take(source)
            assert record is not None
            whole = source.get_checkpoint(record.id, with_payload=True)
            assert whole is not None and whole.payload is not None
            payload, meta = whole.payload, whole
        else:
            data: dict[str, tuple[list[str], list[Any]]] = {}
            for table, columns, _, rows in source.snapshot_blocks(
                service.tables_of(service.ALL_COMPONENTS), 100
            ):
                data.setdefault(table, (columns, []))[1].extend(rows)
            encoded = codec.encode(data, service.ALL_COMPONENTS, 1.0)
            payload = encoded.compressed
            meta = CheckpointRecord(id="cold", sha256=encoded.sha256, components=list(service.ALL_COMPONENTS))
        imported = service.import_payload(target, meta, payload)
        report = service.recover(target, imported, [], verify_only=True, requeue_later=False)
        assert report.changes["tasks"] == (3, 0, 0)
        report = service.recover(target, imported, [], verify_only=False, requeue_later=False)
        assert report.applied and report.changes["tasks"] == (3, 0, 0)
        again = service.recover(target, imported, [], verify_only=True, requeue_later=False)
        assert again.changes["tasks"] == (0, 0, 3)  # equal to the last value

        def rows(backend: SqlBackend) -> list[list[Any]]:
            with backend.engine.connect() as conn:
                return [
                    [
                        tuple(bytes(v) if isinstance(v, memoryview) else v for v in row)
                        for row in conn.execute(text(f"SELECT * FROM {t} ORDER BY 1, 2"))
                    ]
                    for t in ("tasks", "subtasks", "shared_state")
                ]

        assert rows(target) == rows(source)
        assert target.get_task(ids[2]) == source.get_task(ids[2])
    finally:
        source.close()
        target.close()


def test_keys_are_read_in_code_point_order_under_another_collation(
    backend: SqlBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a PostgreSQL database whose collation does not order text by code point, snapshots and the
    stored rows of a merge are read with COLLATE "C": the take is in key order, the restore merges."""
    monkeypatch.setattr(checkpoint_stream, "code_point_default", lambda driver: False)
    monkeypatch.setattr(checkpoint_merge, "code_point_default", lambda driver: False)
    backend.write(
        WriteBatch(tasks=[minimal_task(tid, seq=i + 1) for i, tid in enumerate(["b", "B", "a", "_x", "A"])])
    )
    record = service.take(backend)
    assert record is not None
    _, parts = codec.iter_decode(backend.checkpoint_chunks(record.id), record.sha256, record.id)
    ids = [row[columns.index("id")] for table, columns, rows in parts if table == "tasks" for row in rows]
    assert ids == sorted(ids) == ["A", "B", "_x", "a", "b"]
    backend.write(WriteBatch(tasks=[minimal_task("B", seq=2, status=TaskStatus.FAILED)]))
    report = service.recover(backend, record, ["tasks"], verify_only=False, requeue_later=False)
    assert report.changes == {"tasks": (0, 1, 4)}
    restored = backend.get_task("B")
    assert restored is not None and restored.status != TaskStatus.FAILED


def test_long_runs_of_stored_rows_the_checkpoint_lacks_are_flagged_a_block_at_a_time(
    backend: SqlBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stored rows before the checkpoint's first key and after its last are read and flagged in blocks
    (here of 2 rows): each is reported, and none is held whole."""
    monkeypatch.setattr(checkpoint_merge, "LIVE_BLOCK_ROWS", 2)
    kept = _seed(backend, 2, start=5)
    record = service.take(backend)
    assert record is not None
    later = _seed(backend, 5, start=0) + _seed(backend, 5, start=10)
    for verify_only in (True, False):
        report = service.recover(backend, record, ["tasks"], verify_only=verify_only, requeue_later=False)
        assert report.changes == {"tasks": (0, 0, 2)}
        assert report.later_tasks == [f"tasks/{tid}" for tid in sorted(later)]
    assert all(backend.get_task(tid) is not None for tid in kept + later)
