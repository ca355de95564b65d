"""Benchmark: how long the store's open, crash recovery and the pacer's load take at a start on
a big store.

Builds a store of `--messages` final messages of two parts each (as `prune_store.py` does, and
as many inbound SMS), their parts sent over 31 days on MODEMS, with `--in-flight` of them left
in `sending` as a crash leaves them (or
takes the store `--built` names, and with `--keep` leaves it there for the next run), then
opens it `--runs` times as `edgegw serve` does (the store's writer: its connection, the schema
check and any migration) and runs the crash recovery of the start
(`Store.recover_in_flight`, policy resend) and the read of the last day's sends that the pacer
loads (`recent_sends`), each time on a fresh copy of the built store: warm (the copy in the page
cache, as on a box that restarts the service) and cold (the copy's pages dropped from the cache,
as after a boot). Prints the parts and the median and maximum wall time of each.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import trio
from prune_store import DAYS, START, copy_rows, seed

from edgegw.clock import Clock
from edgegw.pipeline.modems import recent_sends
from edgegw.retention import DAY
from edgegw.store import Store, connect

MODEMS = ("sim0", "sim1", "sim2", "sim3")


def mark_sent(path: Path) -> None:
    """Every part sent on one of MODEMS (picked by the last character of its message's own id)
    a second after its message was made, as a store that ran for a month holds them (written in
    SQL: the copies are made so too)."""
    conn = connect(path)
    conn.execute("BEGIN")
    conn.execute(
        f"UPDATE parts SET modem = 'sim' || (unicode(substr(message_id, 12)) % {len(MODEMS)}),"
        " sent_at = 1 + (SELECT created_at FROM messages WHERE messages.id = parts.message_id)"
    )
    conn.execute("COMMIT")
    conn.close()


def leave_in_flight(path: Path, messages: int) -> None:
    """`messages` of the newest messages back in `sending` with their first part, as a crash
    in the middle of their sends leaves them (written in SQL: no lifecycle move makes this)."""
    conn = connect(path)
    conn.execute("BEGIN")
    picked = "SELECT id FROM messages ORDER BY created_at DESC LIMIT ?"
    conn.execute(
        f"UPDATE messages SET state = 'sending', done_at = NULL WHERE id IN ({picked})", (messages,)
    )
    conn.execute(
        f"UPDATE parts SET state = 'sending' WHERE idx = 1 AND message_id IN ({picked})",
        (messages,),
    )
    conn.execute("COMMIT")
    conn.close()


async def start_once(path: Path) -> tuple[float, float, float, int]:
    """The open's, the recovery's and the pacer's load's wall times, and the messages
    recovered."""
    store = Store(path, clock=Clock(start_epoch=START + 86400))
    async with trio.open_nursery() as nursery:
        began = time.perf_counter()
        await nursery.start(store.run)
        opened = time.perf_counter()
        recovery = await store.recover_in_flight(resend=True)
        recovered = time.perf_counter()
        await recent_sends(store, START + DAYS * DAY - DAY, MODEMS)
        loaded = time.perf_counter()
        nursery.cancel_scope.cancel()
    return opened - began, recovered - opened, loaded - recovered, len(recovery.requeued)


def fresh_copy(built: Path, path: Path, *, cold: bool) -> None:
    shutil.copyfile(built, path)
    if cold:
        with path.open("rb+") as copy:
            os.fsync(copy.fileno())
            # This file's pages only: the cache of everything else on the box stays.
            os.posix_fadvise(copy.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=500_000)
    parser.add_argument("--in-flight", type=int, default=10)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--built", type=Path, help="a store this bench built and kept")
    parser.add_argument("--keep", type=Path, help="keep the built store at this path")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="edgegw-start-") as folder:
        built = args.built
        if built is None:
            built = Path(folder) / "built.db"
            trio.run(seed, built)
            copy_rows(built, args.messages)
            mark_sent(built)
            leave_in_flight(built, args.in_flight)
            conn = connect(built)
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            conn.close()
            if args.keep is not None:
                shutil.copyfile(built, args.keep)
        conn = connect(built)
        (parts,) = conn.execute("SELECT count(*) FROM parts").fetchone()
        conn.close()
        print(f"{parts} parts, {args.in_flight} messages in flight, {args.runs} starts each")
        path = Path(folder) / "edgegw.db"
        for cold in (False, True):
            opens: list[float] = []
            recoveries: list[float] = []
            loads: list[float] = []
            for _ in range(args.runs):
                fresh_copy(built, path, cold=cold)
                opened, recovered, loaded, requeued = trio.run(start_once, path)
                assert requeued == args.in_flight, requeued
                opens.append(opened)
                recoveries.append(recovered)
                loads.append(loaded)
                for leftover in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
                    leftover.unlink(missing_ok=True)
            for name, times in (("open", opens), ("recovery", recoveries), ("pacer load", loads)):
                print(
                    f"{'cold' if cold else 'warm'} {name}: median"
                    f" {statistics.median(times) * 1000:.1f} ms, max {max(times) * 1000:.1f} ms"
                )


if __name__ == "__main__":
    main()
