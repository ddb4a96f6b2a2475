"""Webhooks: signed HTTP deliveries of task events, from an outbox committed with the events.

* :mod:`~controlplane.webhooks.records`: the stored forms (kept in :mod:`controlplane.storage.records`);
* :mod:`~controlplane.webhooks.signing`, :mod:`~controlplane.webhooks.retry`,
  :mod:`~controlplane.webhooks.urls`, :mod:`~controlplane.webhooks.events`: the rules (signature,
  backoff, SSRF policy, which events reach whom and their JSON), free of gRPC and SQL;
* :mod:`~controlplane.webhooks.sender`: one HTTP POST to a checked address;
* :mod:`~controlplane.webhooks.worker`: claims due deliveries, sends them, records the outcome;
* :mod:`~controlplane.webhooks.service`: management, and the engine tap filling the outbox;
* :mod:`controlplane.wiring.webhooks`: how ``build_app`` installs all of it (outside this package,
  which knows nothing of gRPC).
"""
