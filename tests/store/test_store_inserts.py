"""Queuing new messages: every column of every shape of message (with or without a client
reference and a send window, one part or several) written as the message says, in the order
given, whatever the number of messages a write carries."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
from support.store import START, new_message

from edgegw.model import DailyWindow, NewMessage
from edgegw.store import connect, message_inserter, migrate

WINDOW = DailyWindow(
    zone="Europe/Oslo", first_day="2025-08-05", last_day="2025-08-09", opens=28800, closes=61200
)
LONG_TEXT = "A text too long for one SMS, so it goes as concatenated parts. " * 4


def variant(number: int, mixed: bool = True) -> NewMessage:
    """Message `number`, its flags varying with it, and with `mixed` its optional fields too
    (else every message has a client reference and none a window, as in most batches)."""
    base = new_message(f"m{number:06d}", text=LONG_TEXT if number % 7 == 0 else f"Hi {number}")
    return msgspec.structs.replace(
        base,
        client_reference=None if mixed and number % 2 else f"ref-{number}",
        window=WINDOW if mixed and number % 3 == 0 else None,
        flash=number % 5 == 0,
        report_to_customer=number % 4 == 0,
        not_before=START + number,
        created_at=START + number / 2,
    )


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    conn = connect(tmp_path / "edgegw.db")
    try:
        migrate(conn)
        yield conn
    finally:
        conn.close()  # Python 3.13 warns of a connection left to the collector


@pytest.mark.parametrize("mixed", [True, False])
@pytest.mark.parametrize("count", [1, 2, 3, 255, 256, 257, 700])
def test_every_column_as_the_message_says_in_its_order(
    conn: sqlite3.Connection, count: int, mixed: bool
) -> None:
    messages = [variant(number, mixed) for number in range(count)]
    conn.execute("BEGIN")
    message_inserter(messages, registered_delivery=1)(conn)
    conn.execute("COMMIT")

    rows = conn.execute(
        "SELECT id, service_id, batch_reference, client_reference, recipient, originator,"
        " originator_type, content, alphabet, priority, validity_minutes, not_before,"
        " expires_at, status_report, report_to_customer, pid, flash, created_at, window_zone,"
        " window_first, window_last, window_opens, window_closes, registered_delivery, state,"
        " next_attempt_at, due_at, updated_at, modem, error, attempts FROM messages"
        " ORDER BY rowid"
    ).fetchall()
    expected = []
    for m in messages:
        window = m.window
        expected.append(
            (
                m.id,
                m.service_id,
                m.batch_reference,
                m.client_reference,
                m.recipient,
                m.originator,
                m.originator_type,
                m.content,
                m.alphabet,
                m.priority,
                m.validity_minutes,
                m.not_before,
                m.expires_at,
                int(m.status_report),
                int(m.report_to_customer),
                m.pid,
                int(m.flash),
                m.created_at,
                *(
                    (None,) * 5
                    if window is None
                    else (
                        window.zone,
                        window.first_day,
                        window.last_day,
                        window.opens,
                        window.closes,
                    )
                ),
                1,
                "queued",
                m.not_before,
                m.not_before,
                m.created_at,
                None,
                None,
                0,
            )
        )
    assert rows == expected

    parts = conn.execute(
        "SELECT message_id, idx, dcs, udh, payload, state, modem, reference, attempts FROM parts"
        " ORDER BY message_id, idx"
    ).fetchall()
    assert parts == [
        (m.id, index, part.dcs, part.udh, part.payload, "queued", None, None, 0)
        for m in messages
        for index, part in enumerate(m.parts, 1)
    ]
    assert len(messages[0].parts) > 1  # the test covers concatenated parts
    assert all(isinstance(payload, bytes) for *_, payload, _, _, _, _ in parts)


def test_a_duplicate_id_fails_the_write_and_keeps_nothing_of_it(
    conn: sqlite3.Connection,
) -> None:
    first = [variant(number) for number in range(300)]
    conn.execute("BEGIN")
    message_inserter(first)(conn)
    conn.execute("COMMIT")
    again = [variant(number) for number in range(300, 600)] + [first[10]]
    conn.execute("BEGIN")
    conn.execute("SAVEPOINT job")
    with pytest.raises(sqlite3.IntegrityError):
        message_inserter(again)(conn)
    conn.execute("ROLLBACK TO job")
    conn.execute("RELEASE job")
    conn.execute("COMMIT")
    assert conn.execute("SELECT count(*) FROM messages").fetchone() == (300,)
    assert conn.execute("SELECT count(*) FROM parts").fetchone() == (
        sum(len(m.parts) for m in first),
    )
