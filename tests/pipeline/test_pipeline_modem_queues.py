"""The modems' queues as GET /api/modems and the status page show them: per modem its queued
messages bound to it (a part already went out there) and its sending ones, and the queued
messages bound to no modem; read off indexes, since the status page reads them every 2 s while
the queue may hold 100,000."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import msgspec
import trio
from support.pipeline import submit_one

from edgegw.clock import Clock
from edgegw.config import ServiceConfig
from edgegw.pipeline.modems import ModemQueue, queue_counts, queues
from edgegw.pipeline.submit import Submitter
from edgegw.store import Store

START = 1_754_380_800.0


async def test_the_queues_count_bound_sending_and_unbound_messages_off_indexes(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    clock = Clock(start_epoch=START)
    service = msgspec.convert(
        {"id": 1, "name": "s", "username": "user", "password": "secret"}, ServiceConfig
    )
    store = Store(tmp_path / "db", clock=clock)
    await nursery.start(store.run)
    submitter = Submitter([service], store, clock)
    two_parts = await submit_one(submitter, "+4741000000", "x" * 200)
    single = await submit_one(submitter, "+4741000001", "y")
    for n in range(3):
        await submit_one(submitter, f"+474100001{n}", "z")
    await store.claim([(two_parts, "m1"), (single, "m2")])
    # The first part goes out on m1, the second fails for now: the message waits for m1.
    await store.mark_part_sending(two_parts, 1, "m1")
    await store.mark_part_sent(two_parts, 1, 7, last=False)
    await store.requeue(
        two_parts, next_attempt_at=clock.now(), error="+CMS ERROR: 42", counts_as_attempt=True
    )

    assert await queues(store) == ({"m1": ModemQueue(queued=1), "m2": ModemQueue(sending=1)}, 3)

    def plan(conn: sqlite3.Connection) -> list[str]:
        statements: list[str] = []
        conn.set_trace_callback(statements.append)
        try:
            queue_counts(conn)
        finally:
            conn.set_trace_callback(None)
        return [
            row[3]
            for sql in statements
            for row in conn.execute("EXPLAIN QUERY PLAN " + sql)
            if row[3].startswith(("SCAN", "SEARCH"))
        ]

    steps = await store.read(plan)
    # The queued bound to a modem off their own index; every other step an index too (the count
    # of all queued reads no row).
    assert "SEARCH messages USING INDEX messages_queued_modem (modem>?)" in steps, steps
    assert all(" USING " in step and "INDEX" in step for step in steps), steps
