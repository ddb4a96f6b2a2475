"""How ``build_app`` installs the optional features: each one's gRPC service, engine taps and lifecycle.

The feature packages (:mod:`controlplane.checkpoints`, :mod:`controlplane.webhooks`) know
nothing of gRPC; their servicers live in :mod:`controlplane.api.servicers`. Joining the two
is composition, so it sits here, beside the composition root (:mod:`controlplane.app`),
and nothing but the root imports it.
"""
