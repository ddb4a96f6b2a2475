"""System checkpoints: compressed, checksummed snapshots of the durable state, and recovery from them.

* :mod:`.record` — the tables of each component; the stored form (:class:`CheckpointRecord`) lives
  in :mod:`controlplane.storage.records`, with the other records backends store;
* :mod:`.payload` — encoding, compression, checksums and integrity checks;
* :mod:`.service` — taking, listing, retaining and recovering (off the event loop);
* :mod:`.interval` — the automatic interval job;
* :mod:`controlplane.wiring.checkpoints` — how ``build_app`` installs the gRPC service and the job.
"""

from controlplane.checkpoints.record import COMPONENT_TABLES, KNOWN_COMPONENTS, CheckpointRecord

__all__ = ["COMPONENT_TABLES", "KNOWN_COMPONENTS", "CheckpointRecord"]
