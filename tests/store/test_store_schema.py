"""Schema migrations and the message view."""

from __future__ import annotations

import functools
import sqlite3
import stat
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

import pytest
import trio
from support.store import START, new_message, start_store

from edgegw.clock import Clock
from edgegw.model import MessageState
from edgegw.store import SCHEMA_VERSION, Store, StoreError, connect, migrate, transactions


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "edgegw.db"


@pytest.fixture
async def store(db_path: Path, nursery: trio.Nursery) -> Store:
    return await start_store(db_path, nursery)


def _v1_file(path: Path) -> None:
    conn = connect(path)
    migrate(conn, target=1)
    conn.execute(
        "INSERT INTO messages (id, service_id, batch_reference, client_reference, recipient,"
        " originator, originator_type, content, alphabet, priority, validity_minutes, state,"
        " not_before, expires_at, next_attempt_at, due_at, status_report, pid, flash,"
        " created_at, updated_at) VALUES ('0old0message', 7, 'b-old', NULL, '+4741000000',"
        " 'Edge', 'ALPHANUMERIC', 'from v1', 'GSM7', 2, 60, 'queued', ?, ?, ?, ?, 1, 0, 0, ?, ?)",
        (START, START + 3600, START, START, START, START),
    )
    conn.execute(
        "INSERT INTO parts (message_id, idx, dcs, udh, payload) VALUES ('0old0message', 1, 0,"
        " x'', x'01')"
    )
    conn.close()


async def test_a_version_1_file_is_upgraded_and_keeps_its_messages(db_path: Path) -> None:
    _v1_file(db_path)
    store = Store(db_path, clock=Clock(start_epoch=START))
    async with trio.open_nursery() as nursery:
        await nursery.start(store.run)
        version = await store.read(
            lambda conn: conn.execute("SELECT version FROM schema_version").fetchone()[0]
        )
        record = await store.message("0old0message")
        expired = await store.expire_due(START + 7200)
        events = await store.events("0old0message")
        nursery.cancel_scope.cancel()
    assert version == SCHEMA_VERSION >= 3
    assert record is not None and record.state is MessageState.QUEUED
    assert record.dr_status is None
    # The v2 columns and the event log work on the upgraded row.
    assert expired == ["0old0message"]
    assert [(state, detail) for _, state, _, detail in events] == [
        (MessageState.EXPIRED, "validity period expired before sending")
    ]


def _v8_file(path: Path) -> None:
    """Two messages whose sends recorded no SMSC deadline: one sent, one with its first part
    sent and its second being sent when the gateway stopped for the upgrade."""
    conn = connect(path)
    migrate(conn, target=8)
    for message_id, state in (("0old0sent000", "sent"), ("0old0sending", "sending")):
        _old_message(conn, message_id, state, second_part=state)
    conn.close()


def _old_message(
    conn: sqlite3.Connection, message_id: str, state: str, *, second_part: str
) -> None:
    """A message of two parts on modem m1, as an older schema holds it: its first part sent."""
    conn.execute(
        "INSERT INTO messages (id, service_id, batch_reference, recipient, originator,"
        " originator_type, content, alphabet, priority, validity_minutes, state, modem,"
        " not_before, expires_at, next_attempt_at, due_at, status_report, pid, flash,"
        " created_at, updated_at) VALUES (?, 1, 'b-old', '+4741000000', 'Edge',"
        " 'ALPHANUMERIC', 'from an old schema', 'GSM7', 2, 60, ?, 'm1', ?, ?, ?, ?, 1, 0, 0, ?, ?)",
        (message_id, state, START, START + 3600, START, START, START, START),
    )
    for index, part_state in ((1, "sent"), (2, second_part)):
        conn.execute(
            "INSERT INTO parts (message_id, idx, dcs, udh, payload, state, modem, reference,"
            " sent_at) VALUES (?, ?, 0, x'', x'01', ?, 'm1', ?, ?)",
            (message_id, index, part_state, index, START + index),
        )


async def test_a_version_8_file_keeps_its_messages_and_closes_them_when_the_smsc_gave_up(
    db_path: Path,
) -> None:
    """Sends before version 9 recorded no SMSC deadline: such a message counts as given up at
    its validity's end, as before; once a part sent after the upgrade records one, the latest
    of its parts' decides."""
    _v8_file(db_path)
    store = Store(db_path, clock=Clock(start_epoch=START))
    smsc_expires_at = START + 3600 + 1800

    def overdue(before: float) -> Callable[[sqlite3.Connection], list[str]]:
        return functools.partial(
            transactions.close_overdue, fx=store.effects, before=before, now=before
        )

    async with trio.open_nursery() as nursery:
        await nursery.start(store.run)
        counts = await store.read(
            lambda conn: conn.execute(
                "SELECT (SELECT count(*) FROM messages), (SELECT count(*) FROM parts)"
            ).fetchone()
        )
        await store.mark_part_sent(
            "0old0sending", 2, 9, last=True, smsc_expires_at=smsc_expires_at, now=START + 60
        )
        first = await store.read(transactions.next_overdue)
        early = await store.write(overdue(START + 3599))
        at_validity = await store.write(overdue(START + 3600))
        before_smsc = await store.write(overdue(smsc_expires_at - 1))
        at_smsc = await store.write(overdue(smsc_expires_at))
        nursery.cancel_scope.cancel()
    assert counts == (2, 4)
    assert first == START + 3600
    assert (early, at_validity) == ([], ["0old0sent000"])
    assert (before_smsc, at_smsc) == ([], ["0old0sending"])


async def test_a_version_9_file_gets_the_index_of_parts_in_flight_and_recovers_them(
    db_path: Path,
) -> None:
    """Version 10 indexes the parts left in `sending` (crash recovery reads them off it, not
    every part): a part being sent when a version 9 gateway stopped is found and queued again
    after the upgrade, and one being sent when its message was final already ends failed."""
    conn = connect(db_path)
    migrate(conn, target=9)
    for message_id, state in (("0old0sending", "sending"), ("0old0failed0", "failed")):
        _old_message(conn, message_id, state, second_part="sending")
    conn.close()
    store = Store(db_path, clock=Clock(start_epoch=START + 60))
    async with trio.open_nursery() as nursery:
        await nursery.start(store.run)
        indexed = await store.read(
            lambda conn: conn.execute(
                "SELECT message_id, idx FROM parts INDEXED BY parts_sending"
                " WHERE state = 'sending' ORDER BY message_id"
            ).fetchall()
        )
        recovery = await store.recover_in_flight(resend=True)
        parts = await store.read(
            lambda conn: conn.execute(
                "SELECT message_id, state FROM parts WHERE idx = 2 ORDER BY message_id"
            ).fetchall()
        )
        nursery.cancel_scope.cancel()
    assert indexed == [("0old0failed0", 2), ("0old0sending", 2)]
    assert (recovery.requeued, recovery.failed) == (["0old0sending"], [])
    assert parts == [("0old0failed0", "failed"), ("0old0sending", "queued")]


async def test_a_version_10_file_gets_its_queue_indexed_by_service(db_path: Path) -> None:
    """Version 11 indexes the queue by service, then priority and due time, in place of by
    priority and due time: the messages queued before the upgrade are read service by service."""
    conn = connect(db_path)
    migrate(conn, target=10)
    for message_id, service_id, priority in (
        ("0old0camp001", 1, 3),
        ("0old0camp002", 1, 3),
        ("0old0otp0001", 2, 2),
    ):
        conn.execute(
            "INSERT INTO messages (id, service_id, batch_reference, recipient, originator,"
            " originator_type, content, alphabet, priority, validity_minutes, state,"
            " not_before, expires_at, next_attempt_at, due_at, status_report, pid, flash,"
            " created_at, updated_at) VALUES (?, ?, 'b-old', '+4741000000', 'Edge',"
            " 'ALPHANUMERIC', 'from v9', 'GSM7', ?, 60, 'queued', ?, ?, ?, ?, 1, 0, 0, ?, ?)",
            (message_id, service_id, priority, START, START + 3600, START, START, START, START),
        )
    conn.close()
    store = Store(db_path, clock=Clock(start_epoch=START))
    async with trio.open_nursery() as nursery:
        await nursery.start(store.run)
        version, indexes = await store.read(
            lambda conn: (
                conn.execute("SELECT version FROM schema_version").fetchone()[0],
                {
                    row[0]
                    for row in conn.execute(
                        "SELECT name FROM sqlite_master WHERE type = 'index'"
                        " AND tbl_name = 'messages'"
                    )
                },
            )
        )
        due = await store.due([1, 2], START + 1)
        times = await store.queue_times()
        nursery.cancel_scope.cancel()
    assert version == SCHEMA_VERSION
    assert "messages_service_due" in indexes and "messages_due" not in indexes
    assert {service: [message.id for message in messages] for service, messages in due.items()} == {
        1: ["0old0camp001", "0old0camp002"],
        2: ["0old0otp0001"],
    }
    assert times == ({1: START, 2: START}, START + 3600)


async def test_a_sent_message_is_given_up_at_the_latest_of_its_parts_smsc_deadlines(
    store: Store,
) -> None:
    """A later part may have been given a shorter validity than the first (the steps of TS
    23.040 9.2.3.12.1 round each part's up from what is left): the SMSC holds the message until
    the latest of them runs out."""
    await store.insert_messages([new_message("00000000000a", text="x" * 200)])  # two parts
    await store.claim([("00000000000a", "modem-1")], START)
    await store.mark_part_sending("00000000000a", 1, "modem-1", START)
    latest = START + 2 * 86400
    await store.mark_part_sent(
        "00000000000a",
        1,
        41,
        last=False,
        next_part=("00000000000a", 2, "modem-1"),
        smsc_expires_at=latest,
        now=START + 1,
    )
    await store.mark_part_sent(
        "00000000000a", 2, 42, last=True, smsc_expires_at=START + 86400, now=START + 2
    )
    assert await store.read(transactions.next_overdue) == latest


async def test_a_file_from_a_newer_edgegw_is_refused(db_path: Path) -> None:
    conn = connect(db_path)
    migrate(conn)
    conn.execute("UPDATE schema_version SET version = 99")
    conn.close()
    store = Store(db_path, clock=Clock(start_epoch=START))
    with pytest.raises(StoreError, match="schema version 99"):
        await store.run()


def test_a_new_store_is_logged_as_created_and_an_old_one_as_migrated(
    db_path: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="edgegw.store.engine")
    with closing(connect(db_path)) as conn:
        migrate(conn)
    assert caplog.messages == [f"store created at schema version {SCHEMA_VERSION}"]
    caplog.clear()
    with closing(connect(tmp_path / "old.db")) as conn:
        migrate(conn, target=SCHEMA_VERSION - 2)
        caplog.clear()
        migrate(conn)
    assert caplog.messages == [
        f"store schema migrated to version {version}"
        for version in (SCHEMA_VERSION - 1, SCHEMA_VERSION)
    ]


def test_migrating_twice_changes_nothing(db_path: Path) -> None:
    conn = connect(db_path)
    assert migrate(conn) == 0
    assert migrate(conn) == SCHEMA_VERSION
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    conn.close()
    assert {"schema_version", "messages", "parts", "message_events"} <= tables


async def test_message_view_shows_the_message_its_parts_and_times(store: Store) -> None:
    long_text = "x" * 200  # two parts
    await store.insert_messages([new_message("00000000000a", text=long_text)])
    claims = await store.claim([("00000000000a", "modem-1")], START + 1.5)
    assert [part.index for part in claims[0].parts] == [1, 2]
    await store.mark_part_sending("00000000000a", 1, "modem-1", START + 2)
    await store.mark_part_sent("00000000000a", 1, 41, last=False, now=START + 2.25)

    view = await store.message_view(1, "00000000000a")
    assert view is not None
    assert view.messageId == "00000000000a"
    assert view.serviceId == 1
    assert view.batchReference == "batch-1"
    assert view.clientReference == "ref-00000000000a"
    assert view.recipient == "+4741000000"
    assert view.originator == "Edge"
    assert view.state is MessageState.SENDING
    assert view.modem == "modem-1"
    assert view.createdAt == "2025-08-05T08:00:00.000Z"
    assert view.updatedAt == "2025-08-05T08:00:01.500Z"
    assert view.sentAt is None and view.doneAt is None
    first, second = view.parts
    assert (first.index, first.state, first.modem, first.reference, first.attempts) == (
        1,
        MessageState.SENT,
        "modem-1",
        41,
        1,
    )
    assert first.sentAt == "2025-08-05T08:00:02.250Z"
    assert (second.index, second.state, second.reference, second.sentAt) == (
        2,
        MessageState.QUEUED,
        None,
        None,
    )
    # Another service cannot see it, and unknown ids are None.
    assert await store.message_view(2, "00000000000a") is None
    assert await store.message_view(1, "000000000zzz") is None


async def test_due_orders_each_services_messages_by_priority_then_waiting_time(
    store: Store,
) -> None:
    await store.insert_messages(
        [
            new_message("00000000000a", priority=1, now=START),
            new_message("00000000000b", priority=3, now=START + 2),
            new_message("00000000000c", priority=2, now=START + 1),
            new_message("00000000000d", priority=3, now=START + 1),
            new_message("00000000000e", priority=3, now=START + 50),  # not due yet
            new_message("00000000000f", priority=1, now=START + 3, service_id=7),
            new_message("00000000000g", priority=2, now=START + 4, service_id=7),
            new_message("00000000000h", priority=3, now=START + 60, service_id=9),  # not due
        ]
    )
    due = await store.due([1, 7, 9], START + 10)
    assert {service: [message.id for message in messages] for service, messages in due.items()} == {
        1: ["00000000000d", "00000000000b", "00000000000c", "00000000000a"],
        7: ["00000000000g", "00000000000f"],
    }
    assert [message.id for message in (await store.due([1], START + 10, limit=2))[1]] == [
        "00000000000d",
        "00000000000b",
    ]
    assert list(await store.due([9], START + 60)) == [9]
    assert await store.queue_times() == ({1: START, 7: START + 3, 9: START + 60}, START + 3600)
    due_ones = [("00000000000a", "m1"), ("00000000000c", "m1"), ("00000000000d", "m1")]
    assert len(await store.claim(due_ones, START + 10)) == 3
    assert len(await store.claim([("00000000000b", "m1"), ("00000000000e", "m1")], START + 50)) == 2
    assert await store.queue_times() == ({7: START + 3, 9: START + 60}, START + 3603)


def test_sqlite_is_new_enough_for_returning() -> None:
    assert sqlite3.sqlite_version_info >= (3, 35, 0)


async def test_a_new_store_and_its_folder_are_the_owners_only(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    path = tmp_path / "state" / "edgegw.db"
    store = await start_store(path, nursery)
    await store.insert_messages([new_message("m1")])  # the WAL file exists after a write
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    for name in ("edgegw.db", "edgegw.db-wal", "edgegw.db-shm"):
        assert stat.S_IMODE((path.parent / name).stat().st_mode) == 0o600, name


async def test_a_new_store_frees_pages_incrementally(tmp_path: Path, nursery: trio.Nursery) -> None:
    store = await start_store(tmp_path / "edgegw.db", nursery)
    mode = await store.read(lambda conn: conn.execute("PRAGMA auto_vacuum").fetchone()[0])
    assert mode == 2  # INCREMENTAL
