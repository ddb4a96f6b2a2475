"""The batch and template stores of the SQL backend, on SQLite and on PostgreSQL."""

from __future__ import annotations

from controlplane.storage.testing_workflows import WorkflowStoreContract
from tests.controlplane.storage.test_sql_backend import backend, migrated_postgres_url  # noqa: F401 (fixtures)


class TestSqlWorkflowStores(WorkflowStoreContract):
    """Batches and templates, on SQLite and on PostgreSQL."""
