"""ListLogs pages, and where a page token continues them.

A page token names the last record of its page. With replicas sharing Redis that is the record's
id in the shared stream of log records, the same on every replica, and every page after the first
is read from that stream (:meth:`controlplane.replicas.event_stream.LogStream.page`): a listing
begun on one replica continues on any other, or on the same one after a restart, with exactly the
records that follow, in the same order. Otherwise (no Redis, or a record this replica kept alone
while Redis was away) it is the record's place in this replica's log book, valid in this start of
this replica only (its incarnation is in the token): elsewhere the token is refused precisely.
"""

from __future__ import annotations

from dataclasses import dataclass

from controlplane.api.paging import PageTokens
from controlplane.errors import FailedPrecondition
from controlplane.logbook import LogBook, LogEntry, LogFilter

#: Kinds of positions: a record in one replica's log book (incarnation, seq); a stream id (ms, seq).
LOCAL, STREAM = 1, 2


@dataclass
class LogPage:
    """Records read for a page (one more than it shows when there are more), and, when the
    stream was read as far as one call reads without filling the page, the id of the last
    entry read (the next page goes on from there)."""

    entries: list[LogEntry]
    scanned_to: str = ""


def token_for(tokens: PageTokens, entry: LogEntry, incarnation: int, digest: bytes) -> str:
    """A token continuing after ``entry``."""
    if entry.stream_id:
        return token_after_stream_id(tokens, entry.stream_id, digest)
    return tokens.issue_pair(LOCAL, incarnation, entry.seq, digest)


def token_after_stream_id(tokens: PageTokens, stream_id: str, digest: bytes) -> str:
    """A token continuing after the shared stream's entry ``stream_id``."""
    ms, _, seq = stream_id.partition("-")
    return tokens.issue_pair(STREAM, int(ms), int(seq or 0), digest)


async def read_page(
    book: LogBook,
    tokens: PageTokens,
    token: str,
    digest: bytes,
    wanted: LogFilter,
    newest_first: bool,
    limit: int,
    incarnation: int,
) -> LogPage:
    """Up to ``limit`` records of the page ``token`` (empty: the first) continues to.

    Raises:
        InvalidArgument: A token malformed, forged, or issued for other filters or another caller.
        FailedPrecondition: A token this replica cannot continue (issued by another replica or
            before a restart, without Redis; or one needing Redis on a replica without it), or
            whose last record is no longer kept.
    """
    position = tokens.read_pair(token, digest)
    if position is None:
        if newest_first:
            return LogPage(book.query_newest(wanted, None, limit))
        return LogPage(book.query(wanted, 0, limit))
    kind, first, second = position
    if kind == STREAM:
        if book.shared is None:
            raise FailedPrecondition(
                "page_token was issued by a control plane sharing log records through Redis, and this "
                "one reads none (redis.url is empty): list again from the first page here, or ask a "
                "replica with redis.url",
                reason="ERROR_REASON_INVALID_PAGE_TOKEN",
            )
        entries, scanned_to = await book.shared.page(f"{first}-{second}", newest_first, wanted, limit)
        return LogPage(entries, scanned_to)
    if kind != LOCAL or first != incarnation:
        if book.shared is not None:  # a record its replica kept alone while Redis was away
            why = (
                "it names a log record that replica kept alone while Redis was away, and such a "
                "listing continues only on the replica and start that began it"
            )
        else:
            why = (
                "without Redis (redis.url) each replica keeps its own log records, and a listing "
                "continues only on the replica and start that began it"
            )
        raise FailedPrecondition(
            "page_token was issued by another control plane, or by this one before it restarted: "
            f"{why}; list again from the first page",
            reason="ERROR_REASON_INVALID_PAGE_TOKEN",
        )
    oldest = book.oldest_seq()
    # Older records leave the log book (it keeps its last records): those the listing was to show
    # next must still be there (after the token's record; or, newest first, some before it).
    if (oldest >= second) if newest_first else (second < oldest - 1):
        raise FailedPrecondition(
            f"page_token continues after log record {incarnation}.{second}, and the records "
            f"{'before' if newest_first else 'after'} it are no longer kept here (the oldest now is "
            f"{incarnation}.{oldest}); list again from the first page, or read older records from "
            "the log files",
            reason="ERROR_REASON_RESUME_POINT_LOST",
            metadata={"oldest_kept": f"{incarnation}.{oldest}"},
        )
    if newest_first:
        return LogPage(book.query_newest(wanted, second, limit))
    return LogPage(book.query(wanted, second, limit))
