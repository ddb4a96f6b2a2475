"""API keys: the format lives in :mod:`maos_common.api_keys`, shared with the CLI and the SDK."""

from __future__ import annotations

from maos_common.api_keys import PREFIX, digest, display_prefix, generate, matches, parse, valid_id

__all__ = ["PREFIX", "digest", "display_prefix", "generate", "matches", "parse", "valid_id"]
