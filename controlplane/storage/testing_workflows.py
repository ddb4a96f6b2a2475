"""The contract of the optional batch and template stores (:class:`~controlplane.storage.base.StoresBatches`,
:class:`~controlplane.storage.base.StoresTemplates`).

A backend offering them certifies like :mod:`controlplane.storage.testing`: subclass
:class:`WorkflowStoreContract` in a test module that has a ``backend`` fixture yielding
a migrated, empty backend.
"""

from __future__ import annotations

from typing import Any

import pytest

from controlplane.domain.model import Priority, Task
from controlplane.errors import AlreadyExists
from controlplane.storage.base import StorageBackend, StoresBatches, StoresTemplates
from controlplane.storage.records import BatchRecord, BatchSchedule, TemplateParameter, TemplateRecord
from controlplane.storage.testing import full_task, minimal_task

_T0 = 1_700_000_000.25


def _draft(description: str, **changes: Any) -> Task:
    """A task definition as added to a batch or kept in a template (no id, no state)."""
    task = full_task("", **changes)
    task.description = description
    return task


class WorkflowStoreContract:
    """Tests for backends with batch and template storage; subclass it with a ``backend`` fixture."""

    def test_offers_the_capabilities(self, backend: StorageBackend) -> None:
        assert isinstance(backend, StoresBatches) and isinstance(backend, StoresTemplates)

    def test_batch_round_trip_and_names_per_owner(self, backend: StorageBackend) -> None:
        store = backend.batches  # type: ignore[attr-defined]
        batch = BatchRecord(
            id="b1", display_name="quarterly analysis", owner="users/alice", create_time=_T0, request_id="r1"
        )
        store.create_batch(batch)
        assert store.get_batch("b1") == batch
        assert store.find_batch("users/alice", "quarterly analysis") == batch
        assert store.find_batch("users/bob", "quarterly analysis") is None
        with pytest.raises(AlreadyExists):
            store.create_batch(BatchRecord(id="b2", display_name="quarterly analysis", owner="users/alice"))
        with pytest.raises(AlreadyExists):
            store.create_batch(BatchRecord(id="b1", display_name="other", owner="users/alice"))
        store.create_batch(
            BatchRecord(id="b3", display_name="quarterly analysis", owner="users/bob", create_time=_T0 + 1)
        )
        assert store.count_batches("users/alice") == 1
        assert [b.id for b in store.list_batches(None, 0, 10)] == ["b3", "b1"]
        assert [b.id for b in store.list_batches("users/alice", 0, 10)] == ["b1"]
        assert [b.id for b in store.list_batches(None, 1, 10)] == ["b1"]
        assert store.get_batch("nope") is None

    def test_batch_tasks_in_order_then_submitted(self, backend: StorageBackend) -> None:
        store = backend.batches  # type: ignore[attr-defined]
        store.create_batch(BatchRecord(id="b1", display_name="n", owner="u", create_time=_T0))
        first = _draft("first", priority=Priority.HIGH, metadata={"k": "v"})
        second = minimal_task("", description="second")
        assert store.add_batch_task("b1", first, "req-1") == 1
        assert store.add_batch_task("b1", first, "req-1") == 1  # the same request_id adds nothing
        assert store.add_batch_task("b1", second) == 2
        assert store.add_batch_task("nope", second) is None
        assert store.batch_tasks("b1") == [first, second]
        assert store.get_batch("b1").entry_count == 2
        assert store.list_batches("u", 0, 10)[0].entry_count == 2

        claimed = store.claim_batch_submit("b1", ["t1", "t2"], BatchSchedule.SEQUENTIAL, _T0 + 5, _T0 - 60)
        assert (claimed.claim_time, claimed.task_ids, claimed.submitted) == (_T0 + 5, ["t1", "t2"], False)
        assert store.add_batch_task("b1", second) is None  # held by the submit
        # another submitter does not get a fresh claim ...
        other = store.claim_batch_submit("b1", ["t8", "t9"], BatchSchedule.PARALLEL, _T0 + 6, _T0 - 54)
        assert (other.claim_time, other.task_ids) == (_T0 + 5, ["t1", "t2"])
        # ... until it is stale: then it takes it over, with the same task ids and schedule
        taken = store.claim_batch_submit("b1", ["t8", "t9"], BatchSchedule.PARALLEL, _T0 + 70, _T0 + 10)
        assert (taken.claim_time, taken.task_ids, taken.schedule) == (
            _T0 + 70,
            ["t1", "t2"],
            BatchSchedule.SEQUENTIAL,
        )
        assert not store.mark_batch_submitted(
            "b1", BatchSchedule.SEQUENTIAL, _T0 + 5
        )  # the old claim is gone
        store.release_batch_claim("b1", _T0 + 5)  # nor can it release the batch
        assert store.get_batch("b1").claim_time == _T0 + 70
        store.release_batch_claim("b1", _T0 + 70)
        reopened = store.get_batch("b1")
        assert (reopened.claim_time, reopened.task_ids, reopened.submitted) == (None, [], False)
        assert store.batch_tasks("b1") == [first, second]

        claimed = store.claim_batch_submit("b1", ["t1", "t2"], BatchSchedule.PARALLEL, _T0 + 80, _T0)
        assert store.mark_batch_submitted("b1", BatchSchedule.SEQUENTIAL, _T0 + 80)
        assert not store.mark_batch_submitted("b1", BatchSchedule.SEQUENTIAL, _T0 + 80)
        done = store.get_batch("b1")
        assert (
            done.submitted,
            done.schedule,
            done.submit_time,
            done.task_ids,
            done.entry_count,
            done.claim_time,
        ) == (True, BatchSchedule.SEQUENTIAL, _T0 + 80, ["t1", "t2"], 2, None)
        assert store.claim_batch_submit("b1", ["t5"], BatchSchedule.PARALLEL, _T0 + 90, _T0 + 90) == done
        assert store.claim_batch_submit("nope", ["t5"], BatchSchedule.PARALLEL, _T0, _T0) is None
        assert store.add_batch_task("b1", second) is None  # closed
        assert store.delete_batch("b1") and not store.delete_batch("b1")
        assert store.get_batch("b1") is None and store.batch_tasks("b1") == []

    def test_template_round_trip_replace_and_names_per_owner(self, backend: StorageBackend) -> None:
        store = backend.templates  # type: ignore[attr-defined]
        template = TemplateRecord(
            id="tpl1",
            display_name="api-development",
            task=_draft("API in {language}"),
            owner="users/alice",
            description="APIs",
            parameters=[TemplateParameter("language", "the language", "python")],
            source_task="t1",
            create_time=_T0,
        )
        assert store.put_template(template) == template
        assert store.get_template("tpl1") == template
        assert store.find_template("users/alice", "api-development") == template
        assert store.find_template("users/bob", "api-development") is None
        with pytest.raises(AlreadyExists):
            store.put_template(
                TemplateRecord(
                    id="tpl2", display_name="api-development", task=minimal_task(""), owner="users/alice"
                )
            )
        replacement = TemplateRecord(
            id="tpl9",
            display_name="api-development",
            task=minimal_task("", description="x"),
            owner="users/alice",
            create_time=_T0 + 9,
        )
        kept = store.put_template(replacement, replace=True)
        assert kept.id == "tpl1" and kept.create_time == _T0
        assert store.get_template("tpl1") == kept and store.get_template("tpl9") is None
        store.put_template(
            TemplateRecord(
                id="tpl3", display_name="api-development", task=minimal_task(""), owner="users/bob"
            )
        )
        store.put_template(
            TemplateRecord(id="tpl4", display_name="a report", task=minimal_task(""), owner="users/bob")
        )
        assert [t.id for t in store.list_templates(None, 0, 10)] == ["tpl4", "tpl1", "tpl3"]
        assert [t.id for t in store.list_templates("users/bob", 1, 10)] == ["tpl3"]
        assert store.count_templates("users/bob") == 2
        assert store.delete_template("tpl3") and not store.delete_template("tpl3")
        assert store.get_template("tpl3") is None
