"""What the store tests share: the epoch they start at, a message builder, a running store and
a full disk. Never asserts anything itself; the tests decide what to check."""

from __future__ import annotations

import functools
import sqlite3
from pathlib import Path

import trio

from drivers.gsm import encode_message
from edgegw.clock import Clock
from edgegw.store import NewMessage, Store, StoreUnwritable, connect, migrate, run_inline

START = 1_754_380_800.0  # 2025-08-05T08:00:00Z


def new_message(
    message_id: str,
    *,
    text: str = "Hello",
    priority: int = 2,
    now: float = START,
    expires_in: float = 3600.0,
    service_id: int = 1,
) -> NewMessage:
    encoded = encode_message(text, reference=7)
    return NewMessage(
        id=message_id,
        service_id=service_id,
        batch_reference="batch-1",
        client_reference=f"ref-{message_id}",
        recipient="+4741000000",
        originator="Edge",
        originator_type="ALPHANUMERIC",
        content=encoded.text,
        alphabet=encoded.alphabet.value,
        priority=priority,
        validity_minutes=int(expires_in // 60),
        not_before=now,
        expires_at=now + expires_in,
        status_report=True,
        report_to_customer=False,
        pid=0,
        flash=False,
        created_at=now,
        window=None,
        parts=encoded.parts,
    )


async def start_store(path: Path, nursery: trio.Nursery, *, inline: bool = False) -> Store:
    """A store on `path`, its writer running in `nursery`, its clock at START. `inline`: SQL
    runs on the event loop, for tests on trio's autojump clock, which takes a wait for the
    writer's thread for idleness and jumps ahead."""
    running = Store(path, clock=Clock(start_epoch=START), offload=run_inline if inline else None)
    await nursery.start(running.run)
    return running


def damage_table(path: Path, table: str) -> None:
    """Make a store at `path` (of the current schema) whose header and schema read well but
    whose `table` is damaged, as a power cut on an SD card leaves one: its root page's b-tree
    page type is overwritten."""
    conn = connect(path)
    migrate(conn)
    ((root,),) = conn.execute(
        "SELECT rootpage FROM sqlite_master WHERE name = ?", (table,)
    ).fetchall()
    (page_size,) = conn.execute("PRAGMA page_size").fetchone()
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    with path.open("r+b") as file:
        file.seek((root - 1) * page_size)
        file.write(b"\xff")


async def fill_disk(store: Store, message_id: str) -> None:
    """Leave the store's file no room, as a full SD card does (SQLITE_FULL): no new page, and
    the history of `message_id`, which any change of its state writes, full to its last byte
    (by lines dated 0, before any the gateway writes)."""
    (pages,) = await store.write(lambda conn: conn.execute("PRAGMA page_count").fetchone())
    await store.write(lambda conn: conn.execute(f"PRAGMA max_page_count = {pages}"))
    for size in (1000, 100, 10, 1):
        line = functools.partial(_history_line, message_id=message_id, detail="x" * size)
        while True:
            try:
                await store.write(line)
            except StoreUnwritable:
                break


def _history_line(conn: sqlite3.Connection, message_id: str, detail: str) -> None:
    conn.execute(
        "INSERT INTO message_events (message_id, at, state, part, detail)"
        " VALUES (?, 0, 'queued', NULL, ?)",
        (message_id, detail),
    )
