"""The stored form of a checkpoint (no dependencies: the storage layer imports it)."""

from __future__ import annotations

from dataclasses import dataclass, field

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


@dataclass
class CheckpointRecord:
    """A checkpoint's metadata, and its compressed payload when loaded."""

    id: str
    display_name: str = ""
    description: str = ""
    create_time: float = 0.0
    automatic: bool = False
    size: int = 0
    compressed_size: int = 0
    sha256: str = ""
    content_sha256: str = ""
    components: list[str] = field(default_factory=list)
    task_count: int = 0
    format_version: str = ""
    payload: bytes | None = None
