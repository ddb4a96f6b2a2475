"""The checkpoint payload: newline-delimited JSON of raw table rows, zlib-compressed, SHA-256-checksummed.

Layout of the uncompressed bytes (UTF-8)::

    {"format": "maos-checkpoint", "format_version": "1", "create_time": ..., "components": [...]}
    {"table": "tasks", "columns": [...], "binary": [...], "rows": [[...], ...]}
    ...one line per table

Binary columns are base64 strings in JSON (listed in ``binary``). A header with
``"key_order": "codepoint"`` promises each table's rows in code-point order of
their primary key (a restore merges them with the stored rows, and finds the
payload corrupt if they are not); a header without it (older takes, or
:func:`encode`) promises no order. The
checksum covers the compressed bytes (what is stored and exported); the
content digest covers the table lines only, so two checkpoints of the same
state have the same content digest.

A table's rows may span several consecutive lines with the same columns
(:class:`StreamEncoder` writes blocks of :data:`BLOCK_ROWS` rows, so that
neither writing nor reading ever holds a whole table): :func:`iter_decode`
reads both that and one line per table, as written before, with the same
checks, chunk by chunk.

An imported payload is untrusted (issue 11): :class:`Upload` checks it as it
arrives, bounding its compressed size and the size it decompresses to before
anything is inflated whole, and :func:`decode` accepts only the known
components and their tables, with well-formed columns and rows.
"""

from __future__ import annotations

import base64
import hashlib
import re
import zlib
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import orjson

from controlplane.checkpoints.record import COMPONENT_TABLES
from controlplane.errors import FailedPrecondition, InvalidArgument
from controlplane.storage.base import TableRows

FORMAT = "maos-checkpoint"
FORMAT_VERSION = "1"
COMPRESSION_LEVEL = 1  # speed first: 100,000 tasks in well under a second
CORRUPT = "ERROR_REASON_CHECKPOINT_CORRUPT"
#: Bytes inflated per step while an upload is measured (the output never grows past this at once).
INFLATE_STEP = 256 * 1024
#: Bytes inflated per step while a payload is parsed (one step inflates while the one before is parsed).
LINE_STEP = 1024 * 1024
_COLUMN = re.compile(r"[a-z_][a-z0-9_]{0,62}")
#: Rows per table line written by :class:`StreamEncoder` (a few MiB of JSON at most).
BLOCK_ROWS = 5000
#: Compressed bytes per stored chunk.
CHUNK_BYTES = 1024 * 1024
#: The header's ``key_order`` of a payload whose tables list their rows in code-point order of their
#: key (every take since it was added; a restore then merges them with the stored rows).
KEY_ORDER = "codepoint"


class Upload:
    """An imported payload as it arrives: its size, SHA-256 and decompressed size, each checked per chunk.

    Args:
        max_bytes: Most compressed bytes accepted (``limits.checkpoint_import_bytes``).
        max_inflated: Most bytes the payload may decompress to (``limits.checkpoint_inflated_bytes``).
    """

    def __init__(self, max_bytes: int, max_inflated: int):
        self.max_bytes = max_bytes
        self.max_inflated = max_inflated
        self.size = 0
        self.inflated = 0
        self._chunks: list[bytes] = []
        self._sha256 = hashlib.sha256()
        self._inflater = zlib.decompressobj()

    def add(self, chunk: bytes) -> None:
        """Take one chunk; INVALID_ARGUMENT as soon as a bound is passed (nothing stored)."""
        self.size += len(chunk)
        if self.size > self.max_bytes:
            raise InvalidArgument(
                f"the checkpoint payload is over {self.max_bytes} bytes (limits.checkpoint_import_bytes)",
                field="chunk",
            )
        self._sha256.update(chunk)
        self._chunks.append(chunk)
        pending = chunk
        try:
            while pending and not self._inflater.eof:
                self.inflated += len(self._inflater.decompress(pending, INFLATE_STEP))
                if self.inflated > self.max_inflated:
                    raise InvalidArgument(
                        f"the checkpoint payload decompresses to over {self.max_inflated} bytes "
                        "(limits.checkpoint_inflated_bytes)",
                        field="chunk",
                    )
                pending = self._inflater.unconsumed_tail
        except zlib.error as exc:
            raise corrupt(f"it does not decompress ({exc})") from None

    @property
    def sha256(self) -> str:
        """Hex SHA-256 of the bytes so far."""
        return self._sha256.hexdigest()

    def payload(self) -> bytes:
        """The whole compressed payload (checked: within both bounds)."""
        return b"".join(self._chunks)


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
    header = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "create_time": create_time,
        "components": components,
    }
    lines = []
    for table, (columns, rows) in data.items():
        lines.append(
            orjson.dumps(
                {"table": table, "columns": columns, "binary": _binary_columns(columns, rows), "rows": rows},
                default=_binary,
            )
        )
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
    lines = [
        orjson.dumps({"table": t, "columns": c, "binary": _binary_columns(c, r), "rows": r}, default=_binary)
        for t, (c, r) in data.items()
    ]
    return hashlib.sha256(b"\n".join(lines)).hexdigest()


def corrupt(why: str, checkpoint_id: str = "") -> FailedPrecondition:
    """The error of a payload that fails its integrity check."""
    name = f"checkpoints/{checkpoint_id}" if checkpoint_id else "the checkpoint"
    return FailedPrecondition(
        f"{name} is corrupt: {why}; nothing was changed",
        reason=CORRUPT,
        metadata={"checkpoint": name} if checkpoint_id else None,
    )


def checksum(payload: bytes) -> str:
    """Hex SHA-256 of a compressed payload."""
    return hashlib.sha256(payload).hexdigest()


def inflate(payload: bytes, max_inflated: int | None = None, checkpoint_id: str = "") -> bytes:
    """The decompressed payload; corrupt if it does not decompress or is over ``max_inflated`` bytes."""
    inflater = zlib.decompressobj()
    try:
        raw = (
            inflater.decompress(payload, max_inflated + 1)
            if max_inflated is not None
            else inflater.decompress(payload)
        )
    except zlib.error as exc:
        raise corrupt(f"it does not decompress ({exc})", checkpoint_id) from None
    if max_inflated is not None and len(raw) > max_inflated:
        raise corrupt(f"it decompresses to over {max_inflated} bytes", checkpoint_id)
    return raw


def _check_header(header: Any) -> set[str]:
    """The tables a checkpoint with this header may hold (ValueError if the header is not one of ours)."""
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise ValueError("not a MAOS checkpoint")
    if header.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"unsupported format version {str(header.get('format_version'))[:16]!r}")
    components = header.get("components") or []
    if not isinstance(components, list) or not all(isinstance(c, str) for c in components):
        raise ValueError("its components are not a list of names")
    unknown = [c for c in components if c not in COMPONENT_TABLES]
    if unknown or len(set(components)) != len(components):
        raise ValueError(
            f"unknown or repeated components {[c[:32] for c in unknown[:5]]}; "
            f"a checkpoint holds {', '.join(COMPONENT_TABLES)}"
        )
    if not isinstance(header.get("create_time", 0), int | float):
        raise ValueError("its create_time is not a number")
    return {t for c in components for t in COMPONENT_TABLES[c]}


def _check_part(part: Any, tables: set[str], seen: TableRows) -> None:
    """A table line names a table of the header's components once, with well-formed columns and rows."""
    if not isinstance(part, dict):
        raise ValueError("a table line is not an object")
    table = part.get("table")
    if table not in tables or table in seen:
        raise ValueError(f"table {str(table)[:32]!r} is unknown, repeated or not of its components")
    columns, binary, rows = part.get("columns"), part.get("binary"), part.get("rows")
    names = isinstance(columns, list) and all(isinstance(c, str) and _COLUMN.fullmatch(c) for c in columns)
    if not names or not isinstance(columns, list) or len(set(columns)) != len(columns):
        raise ValueError(f"table {table}: the columns are not distinct column names")
    if not isinstance(binary, list) or not all(b in columns for b in binary):
        raise ValueError(f"table {table}: binary names a column it does not have")
    if not isinstance(rows, list) or (
        rows and (set(map(type, rows)) != {list} or set(map(len, rows)) != {len(columns)})
    ):  # a set of the rows' types, then of their widths: no Python call per row
        raise ValueError(f"table {table}: a row does not match its columns")


def decode(
    payload: bytes, expected_sha256: str, checkpoint_id: str = "", max_inflated: int | None = None
) -> tuple[dict[str, Any], TableRows]:
    """Verify and parse a payload: its header and its rows (binary columns as bytes).

    Raises:
        FailedPrecondition: ERROR_REASON_CHECKPOINT_CORRUPT when the checksum
            does not match, or the payload does not decompress (within ``max_inflated``
            bytes) or parse, or names components or tables that are not ours.
    """
    if checksum(payload) != expected_sha256:
        raise corrupt("its SHA-256 does not match the recorded checksum", checkpoint_id)
    raw = inflate(payload, max_inflated, checkpoint_id)
    try:
        lines = raw.split(b"\n")
        del raw
        header = orjson.loads(lines[0])
        tables = _check_header(header)
        data: TableRows = {}
        for line in lines[1:]:
            part = orjson.loads(line)
            _check_part(part, tables, data)
            columns, binary = part["columns"], {part["columns"].index(b) for b in part["binary"]}
            rows = part["rows"]
            if binary:
                rows = [
                    tuple(
                        base64.b64decode(v) if i in binary and v is not None else v for i, v in enumerate(row)
                    )
                    for row in rows
                ]
            else:
                rows = [tuple(row) for row in rows]
            data[part["table"]] = (columns, rows)
    except (zlib.error, orjson.JSONDecodeError, ValueError, KeyError, TypeError, IndexError) as exc:
        raise corrupt(f"cannot be read ({exc})", checkpoint_id) from None
    return header, data


# --- streamed form ----------------------------------------------------------------------------------


class StreamEncoder:
    """Encodes a snapshot block by block into compressed chunks, with the checksums of :func:`encode`.

    Feed :meth:`add` the rows of each table in order (a table's blocks one after another); each call
    returns the compressed chunks of at least :data:`CHUNK_BYTES` that are complete; :meth:`finish`
    returns the rest. The sizes, checksums and task count are final after :meth:`finish`.

    Compression and the content digest run on a thread of their own (zlib and hashlib release the
    GIL), one line behind the encoding of the next: at most two lines wait for it.
    """

    def __init__(self, components: list[str], create_time: float):
        header = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "create_time": create_time,
            "components": components,
            "key_order": KEY_ORDER,  # the rows come from snapshot_blocks
        }
        self._zlib = zlib.compressobj(COMPRESSION_LEVEL)
        self._sha256 = hashlib.sha256()
        self._content = hashlib.sha256()
        self._pending = bytearray()
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="checkpoint-compress")
        self._inflight: deque[Future[bytes]] = deque()
        self.size = 0
        self.compressed_size = 0
        self.task_count = 0
        self._lines = 0
        self._feed(orjson.dumps(header), content=False)

    def _compress(self, raw: bytes, content: bool) -> bytes:
        """(On the thread.) Count, digest and compress the next bytes of the payload."""
        self.size += len(raw)
        if content:  # the digest covers the table lines joined by newlines: not the header
            self._content.update(raw if self._lines else memoryview(raw)[1:])
            self._lines += 1
        return self._zlib.compress(raw)

    def _feed(self, raw: bytes, content: bool = True) -> None:
        self._inflight.append(self._pool.submit(self._compress, raw, content))
        while len(self._inflight) > 1:
            self._pending += self._inflight.popleft().result()

    def _take(self, final: bool) -> list[bytes]:
        out = []
        while len(self._pending) >= CHUNK_BYTES or (final and self._pending):
            chunk = bytes(self._pending[:CHUNK_BYTES])
            del self._pending[:CHUNK_BYTES]
            self._sha256.update(chunk)
            self.compressed_size += len(chunk)
            out.append(chunk)
        return out

    def add(
        self, table: str, columns: list[str], binary: list[str], rows: Sequence[Sequence[Any]]
    ) -> list[bytes]:
        """One line of a table's rows; the chunks now complete."""
        line = orjson.dumps(
            {"table": table, "columns": columns, "binary": binary, "rows": rows}, default=_binary
        )
        self._feed(b"\n" + line)
        if table == "tasks":
            self.task_count += len(rows)
        return self._take(False)

    def finish(self) -> list[bytes]:
        """The last chunks."""
        while self._inflight:
            self._pending += self._inflight.popleft().result()
        self._pending += self._zlib.flush()
        self._pool.shutdown()
        return self._take(True)

    def close(self) -> None:
        """Stop the compressing thread (after an error; :meth:`finish` stops it too)."""
        self._pool.shutdown(cancel_futures=True)

    @property
    def sha256(self) -> str:
        return self._sha256.hexdigest()

    @property
    def content_sha256(self) -> str:
        return self._content.hexdigest()


@dataclass
class Decoded:
    """What :func:`iter_decode` learnt once the whole payload was read."""

    header: dict[str, Any]
    size: int = 0
    compressed_size: int = 0
    content_sha256: str = ""
    task_count: int = 0


def _inflated(chunks: Iterable[bytes], decoded: Decoded) -> Iterator[bytes]:
    """A payload's decompressed bytes, :data:`LINE_STEP` at a time; the next step inflates on a thread
    of its own (zlib releases the GIL) while the caller parses this one, so at most two are held."""
    inflater = zlib.decompressobj()
    source = iter(chunks)

    def step(data: bytes) -> tuple[bytes, bytes, bool, bool]:
        raw = inflater.decompress(data, LINE_STEP)
        return raw, inflater.unconsumed_tail, inflater.eof, bool(inflater.unused_data)

    def next_chunk() -> bytes | None:
        chunk = next(source, None)
        if chunk is not None:
            decoded.compressed_size += len(chunk)
        return chunk

    pool = ThreadPoolExecutor(1, thread_name_prefix="checkpoint-inflate")
    try:
        data = next_chunk()
        future = pool.submit(step, data) if data is not None else None
        eof = False
        while future is not None:
            raw, tail, eof, unused = future.result()
            if eof and (tail or unused):
                raise ValueError("there are bytes after its end")
            data = tail or next_chunk()
            future = pool.submit(step, data) if data is not None else None
            yield raw
        if not eof:
            raise ValueError("it is truncated")
    except zlib.error as exc:
        raise ValueError(f"it does not decompress ({exc})") from None
    finally:
        pool.shutdown(cancel_futures=True)


def _lines(chunks: Iterable[bytes], decoded: Decoded, max_inflated: int | None) -> Iterator[bytes]:
    """The decompressed lines of a payload, chunk by chunk (corrupt if it does not decompress)."""
    carry: list[bytes] = []  # the start of a line not ended yet, in pieces (a line may be MiBs long)
    for raw in _inflated(chunks, decoded):
        decoded.size += len(raw)
        if max_inflated is not None and decoded.size > max_inflated:
            raise ValueError(f"it decompresses to over {max_inflated} bytes")
        if b"\n" not in raw:
            carry.append(raw)
            continue
        parts = raw.split(b"\n")
        carry.append(parts[0])
        yield b"".join(carry)
        yield from parts[1:-1]
        carry = [parts[-1]]
    yield b"".join(carry)


def iter_decode(
    chunks: Iterable[bytes],
    expected_sha256: str,
    checkpoint_id: str = "",
    max_inflated: int | None = None,
    *,
    content_digest: bool = True,
) -> tuple[Decoded, Iterator[tuple[str, list[str], list[list[Any]]]]]:
    """Parse a payload as it is read: its header, then ``(table, columns, rows)`` per line.

    The lines are checked as :func:`decode` checks them (a table may continue over consecutive
    lines with the same columns). The SHA-256 is compared once the last chunk was read, before the
    iterator ends: a consumer must apply nothing until the iterator is exhausted. The ``Decoded``
    returned first is complete then (its ``content_sha256`` left empty without ``content_digest``,
    which a restore does not need).

    Raises:
        FailedPrecondition: ERROR_REASON_CHECKPOINT_CORRUPT, as :func:`decode`.
    """
    digest = hashlib.sha256()

    def counted() -> Iterator[bytes]:
        for chunk in chunks:
            digest.update(chunk)
            yield chunk

    decoded = Decoded(header={})
    lines = _lines(counted(), decoded, max_inflated)
    content = hashlib.sha256()
    try:
        header = orjson.loads(next(lines))
        tables = _check_header(header)
    except (StopIteration, orjson.JSONDecodeError, ValueError, TypeError) as exc:
        raise corrupt(f"cannot be read ({exc})", checkpoint_id) from None
    decoded.header = header

    def parts() -> Iterator[tuple[str, list[str], list[list[Any]]]]:
        seen: TableRows = {}
        current: tuple[str, list[str]] | None = None
        first = True
        try:
            for line in lines:
                if content_digest:
                    if not first:
                        content.update(b"\n")
                    content.update(line)
                first = False
                part = orjson.loads(line)
                if current is not None and isinstance(part, dict) and part.get("table") == current[0]:
                    if part.get("columns") != current[1]:
                        raise ValueError(f"table {current[0]}: its lines have different columns")
                    _check_part(part, tables, {})
                else:
                    _check_part(part, tables, seen)
                    seen[part["table"]] = ([], [])
                    current = (part["table"], part["columns"])
                columns = part["columns"]
                rows = part["rows"]
                for i in [columns.index(b) for b in part["binary"]]:
                    for row in rows:
                        if row[i] is not None:
                            row[i] = base64.b64decode(row[i])
                if part["table"] == "tasks":
                    decoded.task_count += len(rows)
                yield part["table"], columns, rows
        except (zlib.error, orjson.JSONDecodeError, ValueError, KeyError, TypeError, IndexError) as exc:
            raise corrupt(f"cannot be read ({exc})", checkpoint_id) from None
        if digest.hexdigest() != expected_sha256:
            raise corrupt("its SHA-256 does not match the recorded checksum", checkpoint_id)
        if content_digest:
            decoded.content_sha256 = content.hexdigest()

    return decoded, parts()
