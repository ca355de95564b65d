"""Retention and backup (issue 9, item 7): final messages, their parts and events, settled
callbacks and reports older than `keep_final_days` go in small batches and their pages back
to the file system; `edgegw backup` copies a running gateway's store consistently."""

from __future__ import annotations

import functools
import sqlite3
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import msgspec
import pytest
import trio
from support.db import read_only
from support.gateway import example_config
from support.inbound import sms
from support.store import START, new_message, start_store

from drivers.gsm import encode_message
from edgegw.backup import BackupError, backup_store
from edgegw.clock import Clock
from edgegw.delivery.fanout import final_outcomes
from edgegw.delivery.outbox import Endpoint, register_endpoints
from edgegw.delivery.smpp_outbox import record_answer
from edgegw.gateway import Gateway
from edgegw.pipeline.inbound import InboundReceiver
from edgegw.pipeline.keywords import InboundRouter
from edgegw.retention import DAY, Pruner
from edgegw.store import (
    RELEASE_PAGES,
    DrStatus,
    Store,
    connect,
    migrate,
    release_free_pages,
    run_inline,
)


def count(store_path: Path, sql: str) -> int:
    with read_only(store_path) as conn:
        return int(conn.execute(sql).fetchone()[0])


async def fail_all(store: Store, ids: list[str], at: float) -> None:
    async with trio.open_nursery() as nursery:  # concurrent jobs share group commits
        for message_id in ids:
            nursery.start_soon(
                functools.partial(
                    store.fail, message_id, error="no", dr_status=DrStatus.UNSPECIFIED, now=at
                )
            )


async def test_old_final_messages_go_in_batches_and_the_file_shrinks(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    path = tmp_path / "edgegw.db"
    store = await start_store(path, nursery)
    old = [f"old{i:03d}" for i in range(300)]
    recent = [f"new{i:03d}" for i in range(20)]
    waiting = [f"wait{i:03d}" for i in range(20)]
    long_text = "a message of several parts " * 20
    await store.insert_messages([new_message(m, text=long_text) for m in old])
    await store.insert_messages([new_message(m, now=START + DAY) for m in recent + waiting])
    await fail_all(store, old, START + 60)
    await fail_all(store, recent, START + 1.5 * DAY)
    pages_before = count(path, "PRAGMA page_count")
    # Two days on, keeping one day: the old ones go, the recent and the waiting ones stay.
    pruner = Pruner(store, Clock(start_epoch=START + 2 * DAY), keep_final_days=1, batch=50)
    deleted = await pruner.prune_once()
    assert deleted["messages"] == 300
    remaining = count(path, "SELECT count(*) FROM messages")
    assert remaining == 40
    assert count(path, "SELECT count(*) FROM parts WHERE message_id LIKE 'old%'") == 0
    assert count(path, "SELECT count(*) FROM message_events WHERE message_id LIKE 'old%'") == 0
    assert count(path, "SELECT count(*) FROM message_events WHERE message_id LIKE 'new%'") > 0
    assert count(path, "PRAGMA page_count") < pages_before / 2
    assert count(path, "PRAGMA freelist_count") == 0
    assert (await pruner.prune_once())["messages"] == 0  # nothing more is old enough


async def test_old_inbound_sms_go_too_but_not_a_part_still_waiting_for_its_message(
    tmp_path: Path, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    path = tmp_path / "edgegw.db"
    store = await start_store(path, nursery, inline=True)
    clock = Clock(start_epoch=START)
    router = InboundRouter({"sim0": 1}, [])
    receiver = InboundReceiver(store, clock, router, reassembly_timeout=3 * DAY)
    long = encode_message("a long inbound text " * 10, reference=5).parts
    for index in range(100):
        await receiver.receive(sms(f"old {index}", index=index))
    await receiver.receive(sms(long[0], index=100))  # its part 2 has not come yet
    await trio.sleep(1.5 * DAY)
    await receiver.receive(sms("recent", index=101))
    await trio.sleep(0.5 * DAY)
    pruner = Pruner(store, clock, keep_final_days=1, batch=30)
    deleted = await pruner.prune_once()
    assert (deleted["inbound_messages"], deleted["inbound_parts"]) == (100, 100)
    assert count(path, "SELECT count(*) FROM inbound_messages") == 1
    with read_only(path) as conn:
        kept = conn.execute("SELECT concat_seq, message_id FROM inbound_parts ORDER BY id")
        assert kept.fetchall() == [(1, None), (None, mo_id(conn, "recent"))]


async def test_a_message_whose_callback_is_still_to_go_is_kept(
    tmp_path: Path, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """The customer's DR or MO endpoint has been down longer than the retention: the DR and
    the MO still go when it is back, and the message they name can still be looked up."""
    path = tmp_path / "edgegw.db"
    clock = Clock(start_epoch=START)
    # DRs are enqueued; SQL inline, on the autojump clock.
    store = Store(path, clock=clock, offload=run_inline, final_outcomes=final_outcomes)
    await nursery.start(store.run)
    endpoints = [(1, Endpoint.DR, "demo"), (1, Endpoint.MO, "demo")]
    await store.write(functools.partial(register_endpoints, endpoints=endpoints))
    reported = msgspec.structs.replace(new_message("reported"), report_to_customer=True)
    await store.insert_messages([reported, new_message("silent")])
    await fail_all(store, ["reported", "silent"], START)
    receiver = InboundReceiver(store, clock, InboundRouter({"sim0": 1}, []), reassembly_timeout=60)
    await receiver.receive(sms("an MO still to go"))
    await trio.sleep(2 * DAY)
    deleted = await Pruner(store, clock, keep_final_days=1).prune_once()
    assert (deleted["messages"], deleted["inbound_messages"]) == (1, 0)
    assert count(path, "SELECT count(*) FROM outbox WHERE state = 'pending'") == 2
    with read_only(path) as conn:
        assert conn.execute("SELECT id FROM messages").fetchall() == [("reported",)]
        assert mo_id(conn, "an MO still to go")


async def test_a_message_whose_smpp_receipt_waits_for_a_receiver_goes_all_the_same(
    tmp_path: Path, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """An ESME that binds as a transmitter only never takes its receipts: they wait, but the
    messages they name are pruned as any other, and a receipt that has waited longer than the
    retention goes too, or the store would grow without end."""
    path = tmp_path / "edgegw.db"
    store = await start_store(path, nursery, inline=True)
    await store.insert_messages([new_message("asked"), new_message("asked later")])
    await fail_all(store, ["asked", "asked later"], START)

    def receipts_wait(conn: sqlite3.Connection) -> None:
        for message_id, created in (("asked", START), ("asked later", START + 1.5 * DAY)):
            conn.execute(
                "INSERT INTO smpp_outbox (service_id, kind, message_id, payload, created_at)"
                " VALUES (1, 'receipt', ?, x'7b7d', ?)",
                (message_id, created),
            )

    await store.write(receipts_wait)
    deleted = await Pruner(
        store, Clock(start_epoch=START + 2 * DAY), keep_final_days=1
    ).prune_once()
    assert (deleted["messages"], deleted["smpp_outbox"]) == (2, 1)
    with read_only(path) as conn:
        waiting = conn.execute("SELECT message_id, state FROM smpp_outbox").fetchall()
    assert waiting == [("asked later", "pending")]


async def test_the_answer_to_a_pruned_smpp_receipt_settles_no_receipt_queued_after_it(
    tmp_path: Path, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """An ESME back after the retention is offered a receipt that is pruned while its
    deliver_sm is out. A receipt queued then has an id of its own, so the ESME's answer to
    the pruned one does not settle it, unsent."""
    path = tmp_path / "edgegw.db"
    store = await start_store(path, nursery, inline=True)

    def receipt(message_id: str, created: float) -> Callable[[sqlite3.Connection], int]:
        def insert(conn: sqlite3.Connection) -> int:
            return int(
                conn.execute(
                    "INSERT INTO smpp_outbox (service_id, kind, message_id, payload, created_at)"
                    " VALUES (1, 'receipt', ?, x'7b7d', ?) RETURNING id",
                    (message_id, created),
                ).fetchone()[0]
            )

        return insert

    offered = await store.write(receipt("old", START))
    pruned = await Pruner(store, Clock(start_epoch=START + 2 * DAY), keep_final_days=1).prune_once()
    assert pruned["smpp_outbox"] == 1
    queued = await store.write(receipt("new", START + 2 * DAY))
    await store.write(
        functools.partial(record_answer, outbound_id=offered, command_status=0, now=START + 2 * DAY)
    )
    with read_only(path) as conn:
        waiting = conn.execute("SELECT id, message_id, state FROM smpp_outbox").fetchall()
    assert waiting == [(queued, "new", "pending")]


async def test_a_round_that_fails_is_tried_again_and_stops_nothing(
    tmp_path: Path,
    nursery: trio.Nursery,
    autojump_clock: trio.testing.MockClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    path = tmp_path / "edgegw.db"
    store = await start_store(path, nursery, inline=True)
    await store.insert_messages([new_message("old")])
    await fail_all(store, ["old"], START)

    # Something outside the gateway refuses the deletes for a while.
    def refuse(conn: sqlite3.Connection) -> None:
        conn.execute(
            "CREATE TRIGGER held BEFORE DELETE ON messages"
            " BEGIN SELECT RAISE(ABORT, 'held by an operator'); END"
        )

    await store.write(refuse)
    pruner = Pruner(store, Clock(start_epoch=START + 2 * DAY), keep_final_days=1, interval=60)
    await nursery.start(pruner.run)
    await trio.sleep(1)
    assert "pruning failed; trying again in 60 s" in caplog.text
    assert count(path, "SELECT count(*) FROM messages") == 1
    await store.write(lambda conn: conn.execute("DROP TRIGGER held"))
    await trio.sleep(60)
    assert count(path, "SELECT count(*) FROM messages") == 0


def mo_id(conn: sqlite3.Connection, content: str) -> str:
    return str(
        conn.execute("SELECT id FROM inbound_messages WHERE content = ?", (content,)).fetchone()[0]
    )


async def test_free_pages_go_back_a_bounded_step_per_write_job(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    """Each step moves pages in the file: one job for all of a big prune held every write
    for seconds (bench/prune_store.py)."""
    path = tmp_path / "edgegw.db"
    store = await start_store(path, nursery)

    def free_many(conn: sqlite3.Connection) -> int:
        conn.execute("CREATE TABLE filler (data BLOB)")
        conn.executemany("INSERT INTO filler VALUES (?)", [(bytes(4000),)] * (3 * RELEASE_PAGES))
        conn.execute("DROP TABLE filler")
        return int(conn.execute("PRAGMA freelist_count").fetchone()[0])

    free = await store.write(free_many)
    assert free > 2 * RELEASE_PAGES
    assert await store.write(release_free_pages) == free - RELEASE_PAGES
    await Pruner(store, Clock(start_epoch=START), keep_final_days=1).prune_once()
    assert count(path, "PRAGMA freelist_count") == 0


async def test_keep_final_days_zero_keeps_everything(tmp_path: Path, nursery: trio.Nursery) -> None:
    store = await start_store(tmp_path / "edgegw.db", nursery)
    pruner = Pruner(store, Clock(start_epoch=START + 400 * DAY), keep_final_days=0)
    await nursery.start(pruner.run)  # returns at once: nothing is ever pruned
    await store.insert_messages([new_message("m1")])
    await fail_all(store, ["m1"], START)
    assert count(tmp_path / "edgegw.db", "SELECT count(*) FROM messages") == 1


async def test_a_backup_under_load_holds_every_message_acknowledged_before_it(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    gateway = Gateway(example_config(tmp_path))
    bound = await nursery.start(gateway.run)
    acknowledged: list[str] = []
    # An event per count of acknowledged messages to wait for.
    reached: dict[int, trio.Event] = {200: trio.Event()}
    # The load ends between requests: a request cancelled while httpx sends its body leaves
    # httpx's body generator unfinished, and trio warns when the collector finds it.
    enough = trio.Event()

    async def load(client: httpx.AsyncClient) -> None:
        while not enough.is_set():
            answer = await client.post(
                "/gw/rs/sendMessages",
                json={
                    "serviceId": 1000,
                    "username": "demo",
                    "password": "demo",
                    "message": [{"recipient": "+4741000000", "content": f"n{len(acknowledged)}"}]
                    * 5,
                },
                headers={"Accept": "application/json"},
            )
            acknowledged.extend(s["messageId"] for s in answer.json()["messageStatus"])
            for count, event in reached.items():
                if len(acknowledged) >= count:
                    event.set()

    target = tmp_path / "backup.db"
    async with (
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{bound.http_port}") as client,
        trio.open_nursery() as clients,
    ):
        for _ in range(4):
            clients.start_soon(load, client)
        await reached[200].wait()
        before = set(acknowledged)
        copied = await trio.to_thread.run_sync(backup_store, gateway.config.gateway.store, target)
        # The load goes on around the copy (a small store copies faster than one request, so
        # "during" cannot be promised): the gateway keeps acknowledging after it.
        reached[len(before) + 20] = trio.Event()
        with trio.fail_after(30):
            await reached[len(before) + 20].wait()
        enough.set()
    with read_only(target) as conn:
        held = {row[0] for row in conn.execute("SELECT id FROM messages")}
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert before <= held
    assert copied == len(held)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    gateway.stop()


def test_a_backup_never_overwrites(tmp_path: Path) -> None:
    (tmp_path / "edgegw.db").write_bytes(b"")
    (tmp_path / "out.db").write_bytes(b"precious")
    with pytest.raises(BackupError, match="exists already"):
        backup_store(tmp_path / "edgegw.db", tmp_path / "out.db")
    assert (tmp_path / "out.db").read_bytes() == b"precious"
    with pytest.raises(BackupError, match="no store there"):
        backup_store(tmp_path / "missing.db", tmp_path / "new.db")


# backup_store in a process of its own whose files may grow to argv[3] bytes (RLIMIT_FSIZE,
# SIGXFSZ ignored: writes past it fail with EFBIG, as on a full disk).
BACKUP_ON_A_SMALL_DISK = """
import resource, signal, sys
from edgegw.backup import BackupError, backup_store
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[3]), resource.RLIM_INFINITY))
try:
    backup_store(sys.argv[1], sys.argv[2])
except BackupError as exc:
    sys.exit(str(exc))
"""


def test_a_backup_whose_disk_fills_up_names_the_copy_and_keeps_none(tmp_path: Path) -> None:
    """The copy runs out of room half way: no truncated file is left under the backup's
    name, and the error names the copy and its disk, not the store, which is fine."""
    store, out = tmp_path / "edgegw.db", tmp_path / "out.db"
    conn = connect(store)
    migrate(conn)
    conn.execute("CREATE TABLE filler (data BLOB)")
    conn.executemany("INSERT INTO filler VALUES (zeroblob(10000))", [()] * 50)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    copy = [sys.executable, "-c", BACKUP_ON_A_SMALL_DISK, str(store), str(out), "200000"]
    result = subprocess.run(copy, capture_output=True, text=True, check=False)
    assert (result.returncode, result.stderr) == (
        1,
        f"{out}: the copy could not be written (disk I/O error), so none was kept; make room"
        " there and back up again (the store is not affected)\n",
    )
    assert not out.exists()
    assert backup_store(store, out) == 0


def test_a_copy_of_a_damaged_store_is_not_kept(tmp_path: Path) -> None:
    """Every table reads well, but the header's count of free pages is wrong (quick_check
    finds it): the copy fails its check, and no file that could pass for a good backup is
    left."""
    store = tmp_path / "edgegw.db"
    conn = connect(store)
    migrate(conn)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    with store.open("r+b") as file:
        file.seek(36)  # the header's total of freelist pages (SQLite file format 1.3)
        file.write((3).to_bytes(4, "big"))
    kept_none = r"does not check out \(.*freelist.*\), so none was kept; the store may be damaged"
    with pytest.raises(BackupError, match=kept_none):
        backup_store(store, tmp_path / "out.db")
    assert not (tmp_path / "out.db").exists()
