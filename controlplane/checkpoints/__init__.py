"""System checkpoints: compressed, checksummed snapshots of the durable state, and recovery from them.

* :mod:`.record` — the stored form (:class:`CheckpointRecord`), shared with the storage layer;
* :mod:`.payload` — encoding, compression, checksums and integrity checks;
* :mod:`.service` — taking, listing, retaining and recovering (off the event loop);
* :mod:`.interval` — the automatic interval job.
"""

from controlplane.checkpoints.record import COMPONENT_TABLES, KNOWN_COMPONENTS, CheckpointRecord

__all__ = ["COMPONENT_TABLES", "KNOWN_COMPONENTS", "CheckpointRecord"]
