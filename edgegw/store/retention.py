"""Retention (`[store] keep_final_days`, edgegw.retention): write jobs that delete, in small
batches, what has been final for longer than the retention. Each walks its table in rowid order
from a cursor, so a batch reads at most `limit` rows and needs no index: rows are created in
rowid order and finish after they are created, so the walk stops at the first row created after
the cutoff. Pages freed go back to the file with incremental_vacuum. A final message never moves
again (edgegw.model's lifecycle), so deleting it changes no message's state.
"""

from __future__ import annotations

import sqlite3

import msgspec

__all__ = [
    "PRUNED_TABLES",
    "PRUNE_BATCH",
    "RELEASE_PAGES",
    "PruneStep",
    "prune_batch",
    "release_free_pages",
]

PRUNE_BATCH = 500
RELEASE_PAGES = 1000  # free pages one write job hands back (bench/prune_store.py)


class PruneStep(msgspec.Struct, frozen=True, kw_only=True):
    deleted: int  # rows deleted by this batch
    cursor: int  # the rowid to continue after
    finished: bool  # no row at or past the cursor is old enough yet: start over next round


# What each walk deletes: (table, its rowid column, its creation time, the condition of a row
# that may go, given the cutoff as the one parameter). Parts and message events go with their
# message (ON DELETE CASCADE). Inbound parts have no cascade: they go first, those of an open
# group never (the reassembly sweeper closes it), and an inbound message only without them.
# A message (MT or inbound) stays while a callback of it (HTTP or email) is still to go, so
# that the customer who gets it late can still look the message up, and its fate is recorded
# in the message's history; a callback is given up after `give_up_after`. Not so for an SMPP
# receipt or MO, which waits for its ESME to bind as a receiver, for ever if it never does:
# its messages would never go, and the store would grow without end. Such a delivery is itself
# dropped once it has waited as long as the retention keeps what is final: a receipt older
# than that is of no use to an ESME that comes back, and the table stays bounded.
_NOTHING_PENDING = (
    " AND NOT EXISTS (SELECT 1 FROM outbox WHERE message_id = {table}.id AND state = 'pending')"
)
_PRUNED: dict[str, tuple[str, str, str]] = {
    "messages": (
        "rowid",
        "created_at",
        "done_at IS NOT NULL AND done_at < ?" + _NOTHING_PENDING.format(table="messages"),
    ),
    "outbox": ("id", "created_at", "state != 'pending' AND done_at < ?"),
    "smpp_outbox": ("id", "created_at", "coalesce(done_at, created_at) < ?"),
    "status_reports": ("id", "received_at", "rematch_until IS NULL AND received_at < ?"),
    "inbound_parts": (
        "id",
        "received_at",
        "(message_id IS NOT NULL OR duplicate = 1) AND received_at < ?",
    ),
    "inbound_messages": (
        "rowid",
        "received_at",
        "received_at < ? AND NOT EXISTS"
        " (SELECT 1 FROM inbound_parts WHERE message_id = inbound_messages.id)"
        + _NOTHING_PENDING.format(table="inbound_messages"),
    ),
}
PRUNED_TABLES = tuple(_PRUNED)


def prune_batch(
    conn: sqlite3.Connection, *, table: str, before: float, after: int, limit: int = PRUNE_BATCH
) -> PruneStep:
    """Delete the final rows of `table` among the next `limit` rows after rowid `after` that
    were final before `before` (epoch): messages (with parts and events), delivered or
    abandoned callbacks, SMPP deliveries taken, refused or waiting since before `before`,
    settled status reports, and inbound SMS (an inbound message is final once stored, its
    callbacks having their own outbox rows)."""
    key, created, condition = _PRUNED[table]
    rows = conn.execute(
        f"SELECT {key}, {created} FROM {table} WHERE {key} > ? ORDER BY {key} LIMIT ?",
        (after, limit),
    ).fetchall()
    if not rows:
        return PruneStep(deleted=0, cursor=after, finished=True)
    last = int(rows[-1][0])
    deleted = conn.execute(
        f"DELETE FROM {table} WHERE {key} > ? AND {key} <= ? AND {condition}",
        (after, last, before),
    ).rowcount
    finished = len(rows) < limit or rows[-1][1] >= before
    return PruneStep(deleted=deleted, cursor=last, finished=finished)


def release_free_pages(conn: sqlite3.Connection, pages: int = RELEASE_PAGES) -> int:
    """Give up to `pages` free pages back to the file system; the number still free. A step
    moves a page from the end of the file into the hole and writes both to the WAL, so a
    thousand take tens of milliseconds: more go in more write jobs, not one long one."""
    free = int(conn.execute("PRAGMA freelist_count").fetchone()[0])
    # Python's sqlite3 steps a pragma statement once, and each step of incremental_vacuum
    # frees one page: so one statement per page (microseconds each).
    for _ in range(min(free, pages)):
        conn.execute("PRAGMA incremental_vacuum(1)")
    return int(conn.execute("PRAGMA freelist_count").fetchone()[0])
