"""The stored forms of webhooks and their deliveries, kept with the other records storage backends use
(:mod:`controlplane.storage.records`)."""

from controlplane.storage.records import FAILED, PENDING, SUCCEEDED, DeliveryRecord, WebhookRecord

__all__ = ["FAILED", "PENDING", "SUCCEEDED", "DeliveryRecord", "WebhookRecord"]
