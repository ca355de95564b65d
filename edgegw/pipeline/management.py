"""Batch and message management over the store: list, inspect and stop queued batches (spec
section 5), list messages with keyset pagination, and cancel one queued message.

Only `queued` messages can be stopped; one already `sending` or further is left alone (the
lifecycle refuses it). Stopped messages end through the store's `cancel` transaction, so each
gets its final DR (371) like any other final outcome.
"""

from __future__ import annotations

import base64
import binascii
import functools
import math
import sqlite3
from typing import Any, Final

import msgspec

from edgegw.clock import Clock
from edgegw.model import IllegalTransition, MessageState, MessageView
from edgegw.store import Store, iso, transactions

__all__ = [
    "BadCursor",
    "CancelOutcome",
    "Management",
    "MessageBatch",
    "MessageFilter",
    "MessagePage",
    "MessageSummary",
    "StoppedMessage",
]

MAX_PAGE: Final = 1000
DEFAULT_PAGE: Final = 100
# Messages one write job of a batch's stop cancels: a big batch is stopped in several commits,
# so that the sends and reports that come meanwhile wait for one job, not for all of it
# (25,000 messages cancelled in one job held the writer for 2.6 s).
STOP_CHUNK: Final = 500


class MessageBatch(msgspec.Struct, kw_only=True):
    """Spec 5.1 MessageBatch. `onHold` is always 0: there is no spam filter to hold messages."""

    clientBatchReference: str
    totalSize: int  # messages of the batch still queued
    onHold: int = 0


class StoppedMessage(msgspec.Struct, kw_only=True):
    messageId: str
    clientMessageReference: str | None


class MessageSummary(msgspec.Struct, kw_only=True):
    """One message in `GET /api/messages` (ISO 8601 UTC times)."""

    messageId: str
    batchReference: str
    clientReference: str | None
    recipient: str
    state: MessageState
    error: str | None
    createdAt: str
    updatedAt: str
    doneAt: str | None


class MessagePage(msgspec.Struct, kw_only=True):
    messages: list[MessageSummary]
    nextCursor: str | None  # pass as `cursor` for the next page; None on the last page


class MessageFilter(msgspec.Struct, frozen=True, kw_only=True):
    state: MessageState | None = None
    recipient: str | None = None
    batch: str | None = None
    since: float | None = None  # created at or after (epoch seconds)
    until: float | None = None  # created before
    limit: int = DEFAULT_PAGE
    cursor: str | None = None


class CancelOutcome(msgspec.Struct, frozen=True, kw_only=True):
    found: bool
    cancelled: bool
    state: MessageState | None


class BadCursor(ValueError):
    """A `cursor` that this gateway did not hand out."""


def _encode_cursor(created_at: float, message_id: str) -> str:
    raw = f"{created_at!r}|{message_id}".encode()
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def _decode_cursor(cursor: str) -> tuple[float, str]:
    """The (creation time, id) of the last message of a page: what _encode_cursor wrote, never
    a time that is no number (`nan` would match nothing, an empty last page) or a cut cursor
    without its id (which would list that time's messages again)."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("utf-8")
        created, _, message_id = raw.partition("|")
        created_at = float(created)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        created_at = math.nan
    if not math.isfinite(created_at) or not message_id:
        raise BadCursor(f"cursor {cursor!r} is not one this gateway handed out")
    return created_at, message_id


class Management:
    """What the Management API and `/api/messages` ask of the store, per service."""

    def __init__(self, store: Store, clock: Clock):
        self.store = store
        self.clock = clock

    async def message(self, service_id: int, message_id: str) -> MessageView | None:
        """The message as `GET /api/messages/{id}` shows it; None if the service has no such
        id. One past its validity shows as expired, though the sweep has not come round to it."""
        await self.store.expire_if_past(service_id, message_id, self.clock.now())
        return await self.store.message_view(service_id, message_id)

    async def _expire_past(self, service_id: int) -> None:
        """Expire the service's queued messages past their validity that the sweep has not
        come round to yet, so that a list or a count of its messages shows them expired, as
        a read of one of them does (`message`)."""
        await self.store.expire_if_past(service_id, now=self.clock.now())

    async def batches(self, service_id: int) -> list[MessageBatch]:
        """Batches of the service that still have queued messages (one past its validity is
        not queued, though the sweep has not come round to it)."""
        await self._expire_past(service_id)

        def batches(conn: sqlite3.Connection) -> list[MessageBatch]:
            rows = conn.execute(
                "SELECT batch_reference, count(*) FROM messages"
                " WHERE service_id = ? AND state = 'queued'"
                " GROUP BY batch_reference ORDER BY min(created_at), batch_reference",
                (service_id,),
            )
            return [MessageBatch(clientBatchReference=ref, totalSize=n) for ref, n in rows]

        return await self.store.read(batches)

    async def batch(self, service_id: int, reference: str) -> MessageBatch | None:
        """The batch's queued count (without those past their validity, though the sweep has
        not come round to them); None when the service never had such a batch."""
        await self._expire_past(service_id)

        def batch(conn: sqlite3.Connection) -> MessageBatch | None:
            total, queued = conn.execute(
                "SELECT count(*), coalesce(sum(state = 'queued'), 0) FROM messages"
                " WHERE service_id = ? AND batch_reference = ?",
                (service_id, reference),
            ).fetchone()
            if total == 0:
                return None
            return MessageBatch(clientBatchReference=reference, totalSize=queued)

        return await self.store.read(batch)

    async def stop_batch(self, service_id: int, reference: str) -> list[StoppedMessage] | None:
        """Cancel every queued message of the batch, STOP_CHUNK a write job; None when the
        batch is unknown. One claimed for sending meanwhile is not stoppable and left out."""

        def queued(conn: sqlite3.Connection) -> list[StoppedMessage] | None:
            rows = conn.execute(
                "SELECT id, client_reference, state FROM messages"
                " WHERE service_id = ? AND batch_reference = ? ORDER BY created_at, id",
                (service_id, reference),
            ).fetchall()
            if not rows:
                return None
            return [
                StoppedMessage(messageId=message_id, clientMessageReference=client_reference)
                for message_id, client_reference, state in rows
                if state == MessageState.QUEUED
            ]

        candidates = await self.store.read(queued)
        if candidates is None:
            return None
        detail = f"stopped with batch {reference!r} through the Management API"
        stopped: list[StoppedMessage] = []
        for start in range(0, len(candidates), STOP_CHUNK):
            chunk = candidates[start : start + STOP_CHUNK]
            stop = functools.partial(self._stop, chunk=chunk, detail=detail, now=self.clock.now())
            stopped += await self.store.write(stop)
        return stopped

    def _stop(
        self, conn: sqlite3.Connection, chunk: list[StoppedMessage], detail: str, now: float
    ) -> list[StoppedMessage]:
        stopped = []
        for message in chunk:
            try:
                transactions.cancel(conn, self.store.effects, message.messageId, detail, now)
            except IllegalTransition:
                continue  # claimed for sending since it was read
            stopped.append(message)
        return stopped

    async def cancel(self, service_id: int, message_id: str) -> CancelOutcome:
        """Cancel one queued message of the service."""
        now = self.clock.now()

        def cancel(conn: sqlite3.Connection) -> CancelOutcome:
            row = conn.execute(
                "SELECT state FROM messages WHERE id = ? AND service_id = ?",
                (message_id, service_id),
            ).fetchone()
            if row is None:
                return CancelOutcome(found=False, cancelled=False, state=None)
            try:
                transactions.cancel(
                    conn, self.store.effects, message_id, "cancelled through the API", now
                )
            except IllegalTransition as refused:
                return CancelOutcome(found=True, cancelled=False, state=refused.state)
            return CancelOutcome(found=True, cancelled=True, state=MessageState.CANCELLED)

        return await self.store.write(cancel)

    async def messages(self, service_id: int, query: MessageFilter) -> MessagePage:
        """A page of the service's messages, oldest first, after `query.cursor`.

        Keyset pagination on (created_at, id): stable while messages arrive or change state.
        One past its validity is listed expired, though the sweep has not come round to it.
        """
        limit = max(1, min(query.limit, MAX_PAGE))
        clauses = ["service_id = ?"]
        params: list[object] = [service_id]
        for column, value in (
            ("state", query.state),
            ("recipient", query.recipient),
            ("batch_reference", query.batch),
        ):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(str(value))
        if query.since is not None:
            clauses.append("created_at >= ?")
            params.append(query.since)
        if query.until is not None:
            clauses.append("created_at < ?")
            params.append(query.until)
        if query.cursor is not None:
            created_at, last_id = _decode_cursor(query.cursor)
            clauses.append("(created_at, id) > (?, ?)")
            params += [created_at, last_id]
        sql = (
            "SELECT id, batch_reference, client_reference, recipient, state, error, created_at,"
            f" updated_at, done_at FROM messages WHERE {' AND '.join(clauses)}"
            " ORDER BY created_at, id LIMIT ?"
        )
        params.append(limit + 1)
        await self._expire_past(service_id)
        rows = await self.store.read(functools.partial(_fetch, sql=sql, params=params))
        page = rows[:limit]
        summaries = [
            MessageSummary(
                messageId=row[0],
                batchReference=row[1],
                clientReference=row[2],
                recipient=row[3],
                state=MessageState(row[4]),
                error=row[5],
                createdAt=iso(row[6]) or "",
                updatedAt=iso(row[7]) or "",
                doneAt=iso(row[8]),
            )
            for row in page
        ]
        cursor = _encode_cursor(page[-1][6], page[-1][0]) if len(rows) > limit else None
        return MessagePage(messages=summaries, nextCursor=cursor)


def _fetch(conn: sqlite3.Connection, sql: str, params: list[object]) -> list[Any]:
    return conn.execute(sql, params).fetchall()
