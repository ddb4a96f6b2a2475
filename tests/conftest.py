"""Shared fixtures: real PostgreSQL/Redis, a real control plane, real agent processes."""

pytest_plugins = [
    "tests.harness.services",
    "tests.harness.server",
    "tests.harness.receiver",
    "tests.harness.replica_fixtures",
]
