"""Helpers shared by MAOS's three parts: the SDK (``agent_sdk``), the CLI (``cli``) and the server (``controlplane``).

The package graph points one way: ``cli`` may import ``agent_sdk``; ``controlplane`` imports
the generated stubs of ``agent_sdk.proto``; and all three may import ``maos_common``, which
imports none of them (``tests/test_package_graph.py`` checks it). What lives here is what more
than one of them needs and none of them owns:

* :mod:`maos_common.tls` — TLS material from PEM files and a client's TLS choice;
* :mod:`maos_common.heap` — garbage-collector settings for long-running processes;
* :mod:`maos_common.redaction` — credentials kept out of logs and output;
* :mod:`maos_common.addresses` — the address a local process dials;
* :mod:`maos_common.limits` — the bounds of a task's fields (and a join token's uses), for the
  server's checks and the CLI's options;
* :mod:`maos_common.api_keys` — the API key format (recognised offline by the CLI and the SDK).
"""
