"""The domain: tasks, subtasks, agents and their rules. Imports no gRPC and no SQL."""
