pytest_plugins = ["tests.harness.services"]
