"""Contract tests: the protos in protos/maos/v1 as Node.js, buf and Python see them."""
