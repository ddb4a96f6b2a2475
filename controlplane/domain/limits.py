"""Bounds on caller-controlled fields, counted in bytes (UTF-8), and how refusals quote values.

Every field a caller or an agent chooses is bounded, so that no stored object
can make a later read (``ListTasks``, ``ListAgents``, ``GetTaskResults``) too
large to answer. The bounds are settings (``limits.*``); :class:`Limits`
holds the resolved values. Requests over a bound are refused with
INVALID_ARGUMENT naming the field and the limit (:func:`check_bytes`).

Values are never echoed whole in an error message: :func:`quote` shows at most
a short prefix, so a 3,000-character name gets an answer that fits in the
status trailer.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from controlplane.errors import FieldViolation, InvalidArgument

#: Fixed bounds of small free-text fields: display names, and reasons and descriptions.
MAX_NAME_BYTES = 256
MAX_TEXT_BYTES = 4096

#: Characters of a bad value an error message shows.
QUOTE_CHARS = 64
ELLIPSIS = "…"


def quote(value: object, limit: int = QUOTE_CHARS) -> str:
    """``repr`` of at most the first ``limit`` characters of ``value``, marked when cut."""
    text = str(value)
    if len(text) <= limit:
        return repr(text)
    return repr(text[:limit]) + f"{ELLIPSIS} ({len(text)} characters)"


def clip(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters, ending in an ellipsis when cut."""
    return text if len(text) <= limit else text[: max(0, limit - 1)] + ELLIPSIS


def clip_bytes(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` UTF-8 bytes (on a character boundary), with an ellipsis when cut."""
    raw = text.encode()
    if len(raw) <= limit:
        return text
    keep = max(0, limit - len(ELLIPSIS.encode()))
    return raw[:keep].decode(errors="ignore") + ELLIPSIS


def size_of(value: str | bytes) -> int:
    """The size of a value in bytes (strings as UTF-8)."""
    return len(value) if isinstance(value, bytes | bytearray) else len(value.encode())


def map_size(values: Mapping[str, str]) -> int:
    """The bytes of a string map: every key and value together."""
    return sum(size_of(k) + size_of(v) for k, v in values.items())


def over(field: str, size: int, limit: int, setting: str = "") -> FieldViolation:
    """The violation of ``field`` at ``size`` bytes over ``limit`` bytes."""
    where = f" ({setting})" if setting else ""
    return FieldViolation(field, f"is {size} bytes; the limit is {limit} bytes{where}")


def check_bytes(checks: Iterable[tuple[str, int, int, str]]) -> None:
    """Refuse every ``(field, size, limit, setting)`` whose size is over its limit.

    Raises:
        InvalidArgument: naming each field over its limit, with the limit.
    """
    problems = [over(field, size, limit, setting) for field, size, limit, setting in checks if size > limit]
    if problems:
        summary = "; ".join(f"{p.field} {p.description}" for p in problems)
        raise InvalidArgument(f"too large: {summary}", violations=problems)


@dataclass(frozen=True)
class Limits:
    """The resolved ``limits.*`` settings (bytes)."""

    task_context: int = 1024 * 1024
    task_constraints: int = 64 * 1024
    task_metadata: int = 64 * 1024
    agent_labels: int = 16 * 1024
    agent_hostname: int = 255
    agent_field: int = 128
    result: int = 4 * 1024 * 1024
    progress_message: int = 4096
    log_message: int = 8192
    report_text: int = 16 * 1024
    response: int = 3 * 1024 * 1024

    @classmethod
    def from_settings(cls, settings: Any) -> Limits:
        """The limits a control plane runs with (``settings["limits.*"]``)."""
        return cls(
            task_context=settings["limits.task_context_bytes"],
            task_constraints=settings["limits.task_constraints_bytes"],
            task_metadata=settings["limits.task_metadata_bytes"],
            agent_labels=settings["limits.agent_labels_bytes"],
            agent_hostname=settings["limits.agent_hostname_bytes"],
            result=settings["limits.result_bytes"],
            progress_message=settings["limits.progress_message_bytes"],
            log_message=settings["limits.log_message_bytes"],
            response=settings["limits.response_bytes"],
        )


def utf8_chunk(text: str, offset: int, limit: int, field: str = "output_offset") -> tuple[str, int]:
    """The part of ``text`` from byte ``offset`` of its UTF-8 encoding, at most ``limit`` bytes.

    A chunk ends on a character boundary (it holds at least one character when any is left).

    Returns:
        The chunk and the offset of the next one (0 when this chunk ends the text).

    Raises:
        InvalidArgument: ``offset`` is negative, past the end, or inside a character.
    """
    raw = text.encode()
    if not 0 <= offset <= len(raw):
        raise InvalidArgument(f"{field} {offset} is outside the output (0 to {len(raw)} bytes)", field=field)
    if offset < len(raw) and raw[offset] & 0xC0 == 0x80:
        raise InvalidArgument(
            f"{field} {offset} is inside a character; use a next_output_offset", field=field
        )
    end = min(len(raw), offset + max(1, limit))
    while end < len(raw) and raw[end] & 0xC0 == 0x80:
        end -= 1
    if end == offset and offset < len(raw):  # the limit is below one character: take that one
        end += 1
        while end < len(raw) and raw[end] & 0xC0 == 0x80:
            end += 1
    return raw[offset:end].decode(), end if end < len(raw) else 0
