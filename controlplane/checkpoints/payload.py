"""The checkpoint payload: newline-delimited JSON of raw table rows, zlib-compressed, SHA-256-checksummed.

Layout of the uncompressed bytes (UTF-8)::

    {"format": "maos-checkpoint", "format_version": "1", "create_time": ..., "components": [...]}
    {"table": "tasks", "columns": [...], "binary": [...], "rows": [[...], ...]}
    ...one line per table

Binary columns are base64 strings in JSON (listed in ``binary``). The
checksum covers the compressed bytes (what is stored and exported); the
content digest covers the table lines only, so two checkpoints of the same
state have the same content digest.
"""

from __future__ import annotations

import base64
import hashlib
import zlib
from dataclasses import dataclass
from typing import Any

import orjson

from controlplane.errors import FailedPrecondition
from controlplane.storage.base import TableRows

FORMAT = "maos-checkpoint"
FORMAT_VERSION = "1"
COMPRESSION_LEVEL = 1  # speed first: 100,000 tasks in well under a second
CORRUPT = "ERROR_REASON_CHECKPOINT_CORRUPT"


@dataclass
class Encoded:
    """A payload ready to store."""

    compressed: bytes
    size: int
    sha256: str
    content_sha256: str
    task_count: int


def _binary(value: Any) -> str:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode()
    raise TypeError(f"cannot encode {type(value).__name__}")


def _binary_columns(columns: list[str], rows: list[tuple[Any, ...]]) -> list[str]:
    """Columns whose first non-null value is binary."""
    found = []
    for i, name in enumerate(columns):
        first = next((row[i] for row in rows if row[i] is not None), None)
        if isinstance(first, (bytes, bytearray, memoryview)):
            found.append(name)
    return found


def encode(data: TableRows, components: list[str], create_time: float) -> Encoded:
    """Serialise, compress and checksum the rows of a snapshot."""
    header = {"format": FORMAT, "format_version": FORMAT_VERSION, "create_time": create_time,
              "components": components}
    lines = []
    for table, (columns, rows) in data.items():
        lines.append(orjson.dumps({"table": table, "columns": columns, "binary": _binary_columns(columns, rows),
                                   "rows": rows}, default=_binary))
    body = b"\n".join(lines)
    raw = orjson.dumps(header) + b"\n" + body
    compressed = zlib.compress(raw, COMPRESSION_LEVEL)
    return Encoded(
        compressed=compressed,
        size=len(raw),
        sha256=hashlib.sha256(compressed).hexdigest(),
        content_sha256=hashlib.sha256(body).hexdigest(),
        task_count=len(data["tasks"][1]) if "tasks" in data else 0,
    )


def encode_digest(data: TableRows) -> str:
    """The content digest :func:`encode` would compute for these rows."""
    lines = [orjson.dumps({"table": t, "columns": c, "binary": _binary_columns(c, r), "rows": r}, default=_binary)
             for t, (c, r) in data.items()]
    return hashlib.sha256(b"\n".join(lines)).hexdigest()


def corrupt(why: str, checkpoint_id: str = "") -> FailedPrecondition:
    """The error of a payload that fails its integrity check."""
    name = f"checkpoints/{checkpoint_id}" if checkpoint_id else "the checkpoint"
    return FailedPrecondition(f"{name} is corrupt: {why}; nothing was changed", reason=CORRUPT,
                              metadata={"checkpoint": name} if checkpoint_id else None)


def checksum(payload: bytes) -> str:
    """Hex SHA-256 of a compressed payload."""
    return hashlib.sha256(payload).hexdigest()


def decode(payload: bytes, expected_sha256: str, checkpoint_id: str = "") -> tuple[dict[str, Any], TableRows]:
    """Verify and parse a payload: its header and its rows (binary columns as bytes).

    Raises:
        FailedPrecondition: ERROR_REASON_CHECKPOINT_CORRUPT when the checksum
            does not match, or the payload does not decompress or parse.
    """
    if checksum(payload) != expected_sha256:
        raise corrupt("its SHA-256 does not match the recorded checksum", checkpoint_id)
    try:
        lines = zlib.decompress(payload).split(b"\n")
        header = orjson.loads(lines[0])
        if header.get("format") != FORMAT:
            raise ValueError("not a MAOS checkpoint")
        if header.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"unsupported format version {header.get('format_version')!r}")
        data: TableRows = {}
        for line in lines[1:]:
            part = orjson.loads(line)
            columns, binary = part["columns"], {part["columns"].index(b) for b in part["binary"]}
            rows = part["rows"]
            if binary:
                rows = [tuple(base64.b64decode(v) if i in binary and v is not None else v
                              for i, v in enumerate(row)) for row in rows]
            else:
                rows = [tuple(row) for row in rows]
            data[part["table"]] = (columns, rows)
    except (zlib.error, orjson.JSONDecodeError, ValueError, KeyError, TypeError, IndexError) as exc:
        raise corrupt(f"cannot be read ({exc})", checkpoint_id) from None
    return header, data
