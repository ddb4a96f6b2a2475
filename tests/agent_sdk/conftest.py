"""The ``agent_env`` fixture of agent_sdk.testing.

pytest honours ``pytest_plugins`` only in the root conftest, so this package
imports the fixture; a downstream project writes
``pytest_plugins = ["agent_sdk.testing"]`` in its root conftest instead
(test_testing.py checks that this works).
"""

from agent_sdk.testing import agent_env

__all__ = ["agent_env"]
