"""What the status page lists from the store: the latest messages and inbound messages, with
their ids and states. Reads only, on a read connection (`Store.read`); never writes."""

from __future__ import annotations

import sqlite3

import msgspec

__all__ = ["InboundLine", "MessageLine", "Recent", "read_recent"]


class MessageLine(msgspec.Struct, kw_only=True):
    id: str
    service: int
    recipient: str
    state: str
    modem: str | None
    createdAt: float
    updatedAt: float


class InboundLine(msgspec.Struct, kw_only=True):
    id: str
    service: int | None
    modem: str
    originator: str
    content: str
    receivedAt: float


class Recent(msgspec.Struct, kw_only=True):
    messages: list[MessageLine]
    inbound: list[InboundLine]


def read_recent(conn: sqlite3.Connection, limit: int = 50) -> Recent:
    """The `limit` newest messages and inbound messages, newest first."""
    messages = [
        MessageLine(
            id=row[0],
            service=row[1],
            recipient=row[2],
            state=row[3],
            modem=row[4],
            createdAt=row[5],
            updatedAt=row[6],
        )
        for row in conn.execute(
            "SELECT id, service_id, recipient, state, modem, created_at, updated_at"
            " FROM messages ORDER BY rowid DESC LIMIT ?",
            (limit,),
        )
    ]
    inbound = [
        InboundLine(
            id=row[0],
            service=row[1],
            modem=row[2],
            originator=row[3],
            content=row[4],
            receivedAt=row[5],
        )
        for row in conn.execute(
            "SELECT id, service_id, modem, originator, content, received_at"
            " FROM inbound_messages ORDER BY rowid DESC LIMIT ?",
            (limit,),
        )
    ]
    return Recent(messages=messages, inbound=inbound)
