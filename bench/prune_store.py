"""Benchmark: how long a retention round holds up the gateway's other writes on a big store.

Builds a store of `--messages` final messages (two parts and their history each, spread over
31 days; a few thousand are sent through the Submitter and failed, the rest are their copies
made in SQL) and as many inbound SMS, then runs one `Pruner` round keeping `--keep-days`, on
the store's writer with its worker thread as in service, while another task commits an empty
write job every 10 ms. Prints the rows deleted, the pages handed back, the round's wall time
and the probe writes' wait (p50 / p99 / max, ms): what a send or an inbound SMS waits for
during a round.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import msgspec
import trio

from edgegw.clock import Clock
from edgegw.config import ServiceConfig
from edgegw.model import MessageRequest, SendRequest, Settings
from edgegw.pipeline.submit import Submitter
from edgegw.retention import DAY, Pruner
from edgegw.store import DrStatus, Store, connect

START = 1_754_380_800.0  # 2025-08-05T08:00:00Z
SEED = 2000  # messages made by the store itself, then copied
DAYS = 31
TIMES = ("created_at", "updated_at", "done_at", "not_before", "expires_at", "next_attempt_at")


async def seed(path: Path) -> None:
    """SEED messages accepted as a client sends them, then failed: final, with their history."""
    clock = Clock(start_epoch=START)
    store = Store(path, clock=clock)
    service = msgspec.convert(
        {"id": 1, "name": "bench", "username": "bench", "password": "bench"}, ServiceConfig
    )
    text = "a message of several parts " * 8
    async with trio.open_nursery() as nursery:
        await nursery.start(store.run)
        answer = await Submitter([service], store, clock).submit(
            SendRequest(
                serviceId=1,
                username="bench",
                password="bench",
                message=[MessageRequest(recipient="+4741000000", content=text, settings=Settings())]
                * SEED,
            )
        )
        for status in answer.messageStatus:
            assert status.messageId is not None, status.statusMessage
            await store.fail(
                status.messageId, error="no", dr_status=DrStatus.UNSPECIFIED, now=START + 60
            )
        nursery.cancel_scope.cancel()


def copy_rows(path: Path, messages: int) -> None:
    """Copies of the seed messages, each batch a little later, and one inbound SMS each."""
    conn = connect(path)
    columns = [row[1] for row in conn.execute("PRAGMA table_info(messages)")]
    part_columns = [row[1] for row in conn.execute("PRAGMA table_info(parts)")]
    conn.execute("BEGIN")
    copies = messages // SEED
    for copy in range(1, copies + 1):
        shift = DAYS * DAY * copy / copies
        picked = ", ".join(
            f"id || '-{copy}'" if c == "id" else f"{c} + {shift}" if c in TIMES else c
            for c in columns
        )
        conn.execute(
            f"INSERT INTO messages ({', '.join(columns)}) SELECT {picked} FROM messages"
            " WHERE id NOT LIKE '%-%'"
        )
        picked = ", ".join(f"{c} || '-{copy}'" if c == "message_id" else c for c in part_columns)
        conn.execute(
            f"INSERT INTO parts ({', '.join(part_columns)}) SELECT {picked} FROM parts"
            " WHERE message_id NOT LIKE '%-%'"
        )
        conn.execute(
            f"INSERT INTO message_events SELECT message_id || '-{copy}', at + {shift}, state,"
            " part, detail FROM message_events WHERE message_id NOT LIKE '%-%'"
        )
        conn.executemany(
            "INSERT INTO inbound_messages (id, service_id, modem, sno, originator, content,"
            " command, stripped_content, dcs, received_at, sc_timestamp, complete,"
            " parts_expected, parts_received) VALUES (?, 1, 'sim0', '+4790000000',"
            " '+4799999999', ?, '', ?, 0, ?, '2025-08-05T10:00:00+02:00', 1, 1, 1)",
            [
                (f"i{copy}-{i}", "an inbound text " * 5, "an inbound text " * 5, START + shift)
                for i in range(SEED)
            ],
        )
        conn.executemany(
            "INSERT INTO inbound_parts (modem, storage, smsc, originator, sc_timestamp, pid,"
            " dcs, udh, payload, received_at, pdu, message_id) VALUES ('sim0', 'SM',"
            " '+4792001000', '+4799999999', '2025-08-05T10:00:00+02:00', 0, 0, x'', ?, ?, ?, ?)",
            [
                (bytes(70), START + shift, f"pdu {copy} {i}".encode() * 8, f"i{copy}-{i}")
                for i in range(SEED)
            ],
        )
    conn.execute("COMMIT")
    conn.close()


async def prune_round(path: Path, keep_days: float) -> None:
    clock = Clock(start_epoch=START + (DAYS + 1) * DAY)
    store = Store(path, clock=clock)
    waits: list[float] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(store.run)

        async def probe() -> None:
            while True:
                began = time.perf_counter()
                await store.write(lambda conn: None)
                waits.append(time.perf_counter() - began)
                await trio.sleep(0.01)

        nursery.start_soon(probe)
        pages = await store.read(lambda conn: conn.execute("PRAGMA page_count").fetchone()[0])
        began = time.perf_counter()
        deleted = await Pruner(store, clock, keep_final_days=keep_days).prune_once()
        took = time.perf_counter() - began
        after = await store.read(lambda conn: conn.execute("PRAGMA page_count").fetchone()[0])
        nursery.cancel_scope.cancel()
    waits.sort()
    print(f"deleted: {', '.join(f'{n} {table}' for table, n in deleted.items() if n)}")
    print(f"pages: {pages} before, {after} after; the round took {took:.1f} s")
    print(
        f"a write waited (ms, {len(waits)} probes): p50 {statistics.median(waits) * 1000:.1f},"
        f" p99 {waits[int(len(waits) * 0.99)] * 1000:.1f}, max {waits[-1] * 1000:.1f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--keep-days", type=float, default=1.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="edgegw-prune-") as folder:
        path = Path(folder) / "edgegw.db"
        trio.run(seed, path)
        copy_rows(path, args.messages)
        trio.run(prune_round, path, args.keep_days)


if __name__ == "__main__":
    main()
