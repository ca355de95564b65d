"""Reads and one write outside a message's life: the answers remembered for sends that
carried an Idempotency-Key (table `idempotent_responses`), and which clientReferences and
batchReferences a service's recent messages carry (spec 7.7). No I/O of its own beyond the
store's connections. An answer is remembered in the same write job as the messages it reports
(`AnswerSeal`), so a crash cannot keep the messages and lose the answer.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Collection
from typing import Final

import msgspec

from edgegw.model import SendResponse
from edgegw.store.messages import Store

__all__ = [
    "BATCH_REFERENCE_USED",
    "AnswerSeal",
    "StoredResponse",
    "Write",
    "batch_reference_used",
    "response_rememberer",
    "stored_response",
    "used_client_references",
]

# Rows a caller adds to another write job, so that they commit (or roll back) with it.
Write = Callable[[sqlite3.Connection], None]
# Called with a send's answer just before its messages are written (and again if that write
# fails, with the answer as it then is): the rows to commit with the messages, or None.
AnswerSeal = Callable[[SendResponse], Write | None]


class StoredResponse(msgspec.Struct, frozen=True, kw_only=True):
    """The answer once given to a send with an Idempotency-Key, and what the request was."""

    fingerprint: bytes
    status: int
    content_type: str
    body: bytes
    created_at: float


async def stored_response(store: Store, key: str, since: float) -> StoredResponse | None:
    """The answer remembered under `key` if it was given at `since` or later."""

    def find(conn: sqlite3.Connection) -> StoredResponse | None:
        row = conn.execute(
            "SELECT fingerprint, status, content_type, body, created_at"
            " FROM idempotent_responses WHERE key = ? AND created_at >= ?",
            (key, since),
        ).fetchone()
        if row is None:
            return None
        fingerprint, status, content_type, body, created_at = row
        return StoredResponse(
            fingerprint=bytes(fingerprint),
            status=status,
            content_type=content_type,
            body=bytes(body),
            created_at=created_at,
        )

    return await store.read(find)


def response_rememberer(key: str, response: StoredResponse, forget_before: float) -> Write:
    """A write that remembers the answer under `key` (replacing one older than `forget_before`)
    and forgets every answer older than that."""

    def remember(conn: sqlite3.Connection) -> None:
        conn.execute("DELETE FROM idempotent_responses WHERE created_at < ?", (forget_before,))
        conn.execute(
            "INSERT OR IGNORE INTO idempotent_responses"
            " (key, fingerprint, status, content_type, body, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (
                key,
                response.fingerprint,
                response.status,
                response.content_type,
                response.body,
                response.created_at,
            ),
        )

    return remember


async def used_client_references(
    store: Store, service_id: int, references: Collection[str], since: float
) -> set[str]:
    """Which of `references` the service's messages created at `since` or later carry."""
    wanted = list(references)

    def find(conn: sqlite3.Connection) -> set[str]:
        used: set[str] = set()
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            marks = ",".join("?" * len(chunk))
            used.update(
                row[0]
                for row in conn.execute(
                    "SELECT client_reference FROM messages WHERE service_id = ?"
                    f" AND client_reference IN ({marks}) AND created_at >= ?",
                    (service_id, *chunk, since),
                )
            )
        return used

    return await store.read(find) if wanted else set()


# One range of the index messages_batch (schema v13).
BATCH_REFERENCE_USED: Final = (
    "SELECT 1 FROM messages WHERE service_id = ? AND batch_reference = ? AND created_at >= ?"
    " LIMIT 1"
)


async def batch_reference_used(store: Store, service_id: int, reference: str, since: float) -> bool:
    """Whether one of the service's messages created at `since` or later carries the
    batchReference `reference`."""

    def find(conn: sqlite3.Connection) -> bool:
        row = conn.execute(BATCH_REFERENCE_USED, (service_id, reference, since)).fetchone()
        return row is not None

    return await store.read(find)
