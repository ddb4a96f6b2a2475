"""Credentials kept out of logs and output: the rules live in :mod:`maos_common.redaction`.

They are shared with the CLI and ``maos-agent``; this module keeps the server's name for them.
"""

from __future__ import annotations

from maos_common.redaction import (
    MASK,
    SET,
    RedactingFilter,
    is_secret_setting,
    redact,
    redact_url,
    shown_setting,
)

__all__ = ["MASK", "SET", "RedactingFilter", "is_secret_setting", "redact", "redact_url", "shown_setting"]
