"""Access control: permissions per RPC, roles, users, API keys and the audit log."""
