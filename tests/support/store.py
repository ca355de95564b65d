"""What the store tests share: the epoch they start at, a message builder and a running store.
Never asserts anything itself; the tests decide what to check."""

from __future__ import annotations

from pathlib import Path

import trio

from drivers.gsm import encode_message
from edgegw.clock import Clock
from edgegw.store import NewMessage, Store, connect, migrate, run_inline

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
