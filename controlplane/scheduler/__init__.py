"""Scheduling: the ready queue, leases, retries, group commit and agent sessions."""
