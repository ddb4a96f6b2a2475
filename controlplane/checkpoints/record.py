"""Which tables a checkpoint holds, and its stored form (:class:`CheckpointRecord`, kept with the other
records storage backends use in :mod:`controlplane.storage.records`)."""

from __future__ import annotations

from controlplane.storage.records import CheckpointRecord

#: Every table a checkpoint may hold, by the component that owns it.
COMPONENT_TABLES: dict[str, tuple[str, ...]] = {
    "tasks": ("tasks", "subtasks", "shared_state"),
    "agents": ("agents",),
    "batches": ("batches", "batch_tasks"),
    "templates": ("templates",),
}

#: The user guide's names of components (``maos recover --component task_manager``).
COMPONENT_ALIASES = {"task_manager": "tasks", "agent_pool": "agents"}

#: Components RecoverRequest may name (the proto's list); the rest are not captured yet.
KNOWN_COMPONENTS = ("tasks", "agents", "templates", "batches", "access", "webhooks", "config")

__all__ = ["COMPONENT_ALIASES", "COMPONENT_TABLES", "KNOWN_COMPONENTS", "CheckpointRecord"]
