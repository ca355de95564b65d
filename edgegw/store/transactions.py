"""The typed transactions over a message's life: the only code that writes the tables
`messages`, `parts` and `message_events`.

Each function runs inside the writer's transaction (`Store.write`), reads the current state,
asks the lifecycle (`edgegw.model.MESSAGE_TRANSITIONS`, `PART_TRANSITIONS`) where an event leads,
and raises `IllegalTransition` before writing anything when the lifecycle forbids it. A
transaction that gives a message its final outcome hands it to `Effects.final` in the same
transaction (the customer's DR, the SMPP receipt), and every transaction says through
`Effects.touch` which waiting tasks its commit concerns.
"""

from __future__ import annotations

import datetime
import enum
import functools
import sqlite3
from collections.abc import Callable, Sequence
from typing import Any

from drivers.gsm.parts import EncodedPart
from edgegw.model import (
    DUE,
    EXPIRY,
    MESSAGE_TRANSITIONS,
    PART_TRANSITIONS,
    UNSENT_PART_ENDS,
    WENT_OUT,
    Claim,
    ClaimedPart,
    DailyWindow,
    DrStatus,
    IllegalTransition,
    MessageEvent,
    MessageState,
    NewMessage,
    PartEvent,
    PartSent,
    Recovery,
    is_final,
    message_move,
    part_move,
)


class Topic(enum.Enum):
    """What a commit may concern; the store wakes the tasks that subscribed to it."""

    QUEUE = "queue"  # a message became due (queued, requeued): the dispatcher
    CALLBACKS = "callbacks"  # an MO or DR callback was queued: the delivery workers
    SMPP = "smpp"  # a receipt or MO for a bound ESME was queued: the SMPP outbox pump


FinalOutcomes = Callable[[sqlite3.Connection, Sequence[str], float], None]


def no_final_outcomes(conn: sqlite3.Connection, message_ids: Sequence[str], now: float) -> None:
    """A store without a notification step (tests of the store alone): nothing is enqueued."""


class Effects:
    """What a transaction sets off besides its own rows: the notification step for final
    outcomes (runs in the same transaction) and the topics to wake after the commit."""

    def __init__(self, final: FinalOutcomes, touch: Callable[[Topic], None]) -> None:
        self._final = final
        self.touch = touch

    def final(self, conn: sqlite3.Connection, message_ids: Sequence[str], now: float) -> None:
        if message_ids:
            self._final(conn, message_ids, now)
            self.queued_for_customers()

    def queued_for_customers(self) -> None:
        """The transaction queued a DR, a receipt or an MO: its commit wakes the delivery
        workers and the SMPP outbox pump."""
        self.touch(Topic.CALLBACKS)
        self.touch(Topic.SMPP)


def iso(epoch: float | None) -> str | None:
    """Epoch seconds as ISO 8601 UTC with milliseconds (the API views' time format)."""
    if epoch is None:
        return None
    moment = datetime.datetime.fromtimestamp(epoch, datetime.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


# The columns every new message binds, and the literal state; next_attempt_at and due_at start
# as not_before, updated_at as created_at. client_reference, data_coding,
# user_message_reference and the window's columns are named only when the message has them, so
# that no NULL is bound (see _message_row).
_MESSAGE_COLUMNS = (
    "id, service_id, batch_reference, recipient, originator, originator_type, content, alphabet,"
    " priority, validity_minutes, not_before, expires_at, status_report, report_to_customer, pid,"
    " flash, created_at, registered_delivery, next_attempt_at, due_at, updated_at"
)
_MESSAGE_WIDTH = 21
_REFERENCE_COLUMN = ", client_reference"
_CODING_COLUMN = ", data_coding"
_USER_REFERENCE_COLUMN = ", user_message_reference"
_WINDOW_COLUMNS = ", window_zone, window_first, window_last, window_opens, window_closes"
_WINDOW_WIDTH = 5
_PART_COLUMNS = "INSERT INTO parts (message_id, idx, dcs, udh, payload) VALUES "
_PART_WIDTH = 5
# Rows a single INSERT statement takes at most. A statement runs in one call into SQLite, which
# leaves Python's GIL free the whole time; `executemany` takes the GIL back after every row, and
# whenever the event loop is busy each take waits for the interpreter's switch interval (5 ms),
# so the writer crawled while the loop validated the next batch. 256 message rows bind at most
# 6,912 values, far below SQLite's limit of 32,766.
_ROWS_PER_STATEMENT = 256
_INSERT_EVENT = (
    "INSERT INTO message_events (message_id, at, state, part, detail) VALUES (?,?,?,?,?)"
)
_WENT_OUT_SQL = ",".join(f"'{state.value}'" for state in sorted(WENT_OUT))
# The message keeps its modem only while a part of it went out there (parts stay on one modem).
_KEEP_MODEM = (
    f"CASE WHEN EXISTS (SELECT 1 FROM parts WHERE message_id = messages.id"
    f" AND state IN ({_WENT_OUT_SQL})) THEN modem END"
)


def daily_window(row: Sequence[Any]) -> DailyWindow | None:
    """A message's daily send window from its columns window_zone .. window_closes."""
    zone, first, last, opens, closes = row
    if zone is None:
        return None
    return DailyWindow(zone=zone, first_day=first, last_day=last, opens=opens, closes=closes)


# Which optional columns a message row names: client_reference, data_coding,
# user_message_reference, a send window.
_Shape = tuple[bool, bool, bool, bool]


def _message_width(shape: _Shape) -> int:
    """Values bound per message row of `shape`."""
    reference, coding, user_reference, window = shape
    return _MESSAGE_WIDTH + reference + coding + user_reference + _WINDOW_WIDTH * window


@functools.cache
def _message_values(shape: _Shape, rows: int) -> str:
    """The INSERT of `rows` messages of `shape`."""
    reference, coding, user_reference, window = shape
    columns = _MESSAGE_COLUMNS + (_REFERENCE_COLUMN if reference else "")
    if coding:
        columns += _CODING_COLUMN
    if user_reference:
        columns += _USER_REFERENCE_COLUMN
    if window:
        columns += _WINDOW_COLUMNS
    row = "(" + "?," * _message_width(shape) + "'queued')"
    return f"INSERT INTO messages ({columns}, state) VALUES " + ",".join([row] * rows)


@functools.cache
def _part_values(rows: int) -> str:
    return _PART_COLUMNS + ",".join(["(?,?,?,?,?)"] * rows)


def _message_row(message: NewMessage, registered_delivery: int) -> list[Any]:
    """The values of a message's row, in the order of `_message_values`, each bound as SQLite
    takes it without Python's sqlite3 module adapting it: a None, a bool or a bytes value costs
    two failed attribute lookups there (about a quarter of the insert's CPU, measured with
    callgrind), so booleans go as ints and NULLs are left to the columns' default."""
    not_before, created_at = message.not_before, message.created_at
    row: list[Any] = [
        message.id,
        message.service_id,
        message.batch_reference,
        message.recipient,
        message.originator,
        message.originator_type,
        message.content,
        message.alphabet,
        message.priority,
        message.validity_minutes,
        not_before,
        message.expires_at,
        int(message.status_report),
        int(message.report_to_customer),
        message.pid,
        int(message.flash),
        created_at,
        registered_delivery,
        not_before,
        not_before,
        created_at,
    ]
    if message.client_reference is not None:
        row.append(message.client_reference)
    if message.data_coding is not None:
        row.append(message.data_coding)
    if message.user_message_reference is not None:
        row.append(message.user_message_reference)
    window = message.window
    if window is not None:
        row += (window.zone, window.first_day, window.last_day, window.opens, window.closes)
    return row


def _insert_rows(
    conn: sqlite3.Connection, statement: Callable[[int], str], width: int, values: list[Any]
) -> None:
    """Insert rows given as one flat list of `width` values each, in statements of at most
    _ROWS_PER_STATEMENT rows; a shorter rest is cut into powers of two, so that the writer's
    connection caches a handful of statements whatever the number of rows."""
    rows = len(values) // width
    start = 0
    while start < rows:
        take = min(_ROWS_PER_STATEMENT, 1 << ((rows - start).bit_length() - 1))
        conn.execute(statement(take), values[start * width : (start + take) * width])
        start += take


def message_inserter(
    messages: Sequence[NewMessage], *, registered_delivery: int = 0
) -> Callable[[sqlite3.Connection], None]:
    """A write that queues accepted messages with their parts (and the SMPP receipt request
    `registered_delivery`), for callers that add their own rows to the same transaction. The
    rows are built in the writer's thread, not on the event loop (a thousand messages' rows
    took milliseconds of a loop step)."""

    def insert(conn: sqlite3.Connection) -> None:
        # Consecutive messages with the same optional columns share statements.
        shape: _Shape | None = None
        values: list[Any] = []
        part_values: list[Any] = []
        for message in messages:
            now_shape = (
                message.client_reference is not None,
                message.data_coding is not None,
                message.user_message_reference is not None,
                message.window is not None,
            )
            if now_shape != shape:
                if shape is not None:
                    _insert_shape(conn, shape, values)
                shape, values = now_shape, []
            values += _message_row(message, registered_delivery)
            _add_part_rows(part_values, message.id, message.parts)
        if shape is not None:
            _insert_shape(conn, shape, values)
        _insert_rows(conn, _part_values, _PART_WIDTH, part_values)

    return insert


def _add_part_rows(values: list[Any], message_id: str, parts: Sequence[EncodedPart]) -> None:
    """The values of a message's part rows, in the order of `_part_values`, added to `values`."""
    for index, part in enumerate(parts, 1):
        # A bytearray is bound as a blob as it is; bytes would be adapted first.
        values += (message_id, index, part.dcs, bytearray(part.udh), bytearray(part.payload))


def _insert_shape(conn: sqlite3.Connection, shape: _Shape, values: list[Any]) -> None:
    statement = functools.partial(_message_values, shape)
    _insert_rows(conn, statement, _message_width(shape), values)


def _event(
    conn: sqlite3.Connection,
    message_id: str,
    now: float,
    state: MessageState,
    detail: str,
    part: int | None = None,
) -> None:
    conn.execute(_INSERT_EVENT, (message_id, now, state, part, detail))


def note(conn: sqlite3.Connection, message_id: str, now: float, detail: str) -> None:
    """A line in the message's history (a callback's fate); the message keeps its state."""
    conn.execute(
        "INSERT INTO message_events (message_id, at, state, part, detail)"
        " SELECT id, ?, state, NULL, ? FROM messages WHERE id = ?",
        (now, detail, message_id),
    )


def _current(conn: sqlite3.Connection, message_id: str) -> tuple[MessageState, bool]:
    """The message's state, and whether it has reached its final outcome."""
    row = conn.execute(
        "SELECT state, dr_status FROM messages WHERE id = ?", (message_id,)
    ).fetchone()
    if row is None:
        raise KeyError(f"no message {message_id!r}")
    state = MessageState(row[0])
    return state, is_final(state, row[1])


def _part_state(conn: sqlite3.Connection, message_id: str, index: int) -> MessageState:
    row = conn.execute(
        "SELECT state FROM parts WHERE message_id = ? AND idx = ?", (message_id, index)
    ).fetchone()
    if row is None:
        raise KeyError(f"no part {index} of message {message_id!r}")
    return MessageState(row[0])


def _move_part(
    conn: sqlite3.Connection,
    message_id: str,
    index: int,
    event: PartEvent,
    assignments: str = "",
    params: Sequence[Any] = (),
    *,
    state: MessageState | None = None,
) -> MessageState:
    """Move one part by `event` (the lifecycle decides), setting `assignments` too; `state`,
    the part's state when the caller has just read it."""
    if state is None:
        state = _part_state(conn, message_id, index)
    target = part_move(state, event, what=f"part {index} of {message_id}")
    conn.execute(
        f"UPDATE parts SET state = ?{assignments} WHERE message_id = ? AND idx = ?",
        (target, *params, message_id, index),
    )
    return target


def _end_unsent(conn: sqlite3.Connection, message_ids: Sequence[str], state: MessageState) -> None:
    """The parts still queued of messages that just ended in `state` end with them: no part
    of a final message waits to be sent."""
    event = UNSENT_PART_ENDS.get(state)
    if event is None:
        return
    target = part_move(MessageState.QUEUED, event)
    error = f"not sent: the message ended {state}"
    # A part tried before keeps the error of its last try.
    conn.executemany(
        "UPDATE parts SET state = ?, error = coalesce(error, ?)"
        " WHERE message_id = ? AND state = 'queued'",
        [(target, error, message_id) for message_id in message_ids],
    )


def _move_message(
    conn: sqlite3.Connection,
    message_id: str,
    event: MessageEvent,
    now: float,
    assignments: str = "",
    params: Sequence[Any] = (),
    *,
    current: tuple[MessageState, bool] | None = None,
) -> MessageState:
    """Move the message by `event` (the lifecycle decides), setting `assignments` too;
    `current`, what `_current` would read, when the caller has just read it."""
    state, final = current or _current(conn, message_id)
    target = message_move(state, event, final=final, what=f"message {message_id}")
    conn.execute(
        f"UPDATE messages SET state = ?, updated_at = ?{assignments} WHERE id = ?",
        (target, now, *params, message_id),
    )
    return target


def _finish(
    conn: sqlite3.Connection,
    fx: Effects,
    message_id: str,
    event: MessageEvent,
    now: float,
    *,
    error: str | None,
    dr_status: DrStatus,
    ext_status: str | None = None,
) -> MessageState:
    """Give the message its final outcome and hand it to the notification step."""
    target = _move_message(
        conn,
        message_id,
        event,
        now,
        ", error = ?, dr_status = ?, ext_status = ?, done_at = ?",
        (error, dr_status, ext_status, now),
    )
    _end_unsent(conn, (message_id,), target)
    _event(conn, message_id, now, target, error or target.value)
    fx.final(conn, (message_id,), now)
    return target


# -- queueing -------------------------------------------------------------------------------


def insert_messages(
    conn: sqlite3.Connection,
    fx: Effects,
    groups: Sequence[tuple[Sequence[NewMessage], int]],
) -> None:
    """Queue accepted messages with their parts; each group with its SMPP receipt request
    (`registered_delivery`)."""
    for messages, registered_delivery in groups:
        message_inserter(messages, registered_delivery=registered_delivery)(conn)
    fx.touch(Topic.QUEUE)


def expire_due(
    conn: sqlite3.Connection,
    fx: Effects,
    now: float,
    message_ids: Sequence[str] | None = None,
    service_id: int | None = None,
) -> list[str]:
    """Queued messages past their validity (or the end of their send window) -> `expired`:
    all of them (the expiry sweep), or those of `message_ids`, each as the sweep would; with
    `service_id`, only that service's."""
    target = message_move(MessageState.QUEUED, MessageEvent.EXPIRE, final=False)
    detail = "validity period expired before sending"
    update = (
        "UPDATE messages SET state = ?, error = ?, dr_status = ?, done_at = ?,"
        f" updated_at = ? WHERE state = 'queued' AND {EXPIRY.sql()}"
    )
    values: tuple[object, ...] = (target, detail, DrStatus.VALIDITY_EXPIRED, now, now, now)
    if service_id is not None:
        # `+` keeps the service's queue index out: the rows past their validity are found in
        # messages_expiry, a few, not among all the service's queued ones.
        update += " AND +service_id = ?"
        values += (service_id,)
    if message_ids is None:
        ids = [row[0] for row in conn.execute(update + " RETURNING id", values)]
    else:
        ids = [
            row[0]
            for message_id in message_ids
            for row in conn.execute(update + " AND id = ? RETURNING id", (*values, message_id))
        ]
    _end_unsent(conn, ids, target)
    conn.executemany(_INSERT_EVENT, [(mid, now, target, None, detail) for mid in ids])
    fx.final(conn, ids, now)
    return ids


def expire(conn: sqlite3.Connection, fx: Effects, message_id: str, detail: str, now: float) -> None:
    """Expire one queued or claimed message (validity checked again before sending)."""
    _finish(
        conn,
        fx,
        message_id,
        MessageEvent.EXPIRE,
        now,
        error=detail,
        dr_status=DrStatus.VALIDITY_EXPIRED,
    )


def cancel(conn: sqlite3.Connection, fx: Effects, message_id: str, detail: str, now: float) -> None:
    """The customer stops a queued message (DR 371). One past its validity is no longer pending
    delivery (SMPP 3.4 section 4.9.1) but expired, though the sweep has not come round to it:
    it is expired here as the sweep would (DR 361), and the cancel refused (IllegalTransition,
    its state `expired`)."""
    expire_due(conn, fx, now, (message_id,))
    _finish(
        conn,
        fx,
        message_id,
        MessageEvent.CANCEL,
        now,
        error=detail,
        dr_status=DrStatus.TRANSMIT_ERROR,
    )


def replace(
    conn: sqlite3.Connection,
    fx: Effects,
    message_id: str,
    new: NewMessage,
    registered_delivery: int,
    now: float,
) -> bool:
    """An ESME's replace_sm (SMPP 3.4 section 4.10): a queued message none of whose parts has
    been handed to a modem takes `new`'s text and parts, schedule and validity, and the receipt
    request `registered_delivery`. False when it is past that (being sent, a part tried, sent
    or final), and nothing changes. One past its validity is no longer pending delivery but
    expired, though the sweep has not come round to it: it is expired here as the sweep would
    (DR 361), as a cancel does, and the replace refused."""
    expire_due(conn, fx, now, (message_id,))
    row = conn.execute(
        "SELECT 1 FROM messages WHERE id = ? AND state = 'queued'"
        " AND NOT EXISTS (SELECT 1 FROM parts WHERE message_id = messages.id"
        " AND (state != 'queued' OR attempts > 0))",
        (message_id,),
    ).fetchone()
    if row is None:
        return False
    target = _move_message(
        conn,
        message_id,
        MessageEvent.REPLACE,
        now,
        # Never tried, so its next try is its (new) schedule.
        ", content = ?, alphabet = ?, validity_minutes = ?, not_before = ?, expires_at = ?,"
        " next_attempt_at = ?, due_at = ?, registered_delivery = ?",
        (
            new.content,
            new.alphabet,
            new.validity_minutes,
            new.not_before,
            new.expires_at,
            new.not_before,
            new.not_before,
            registered_delivery,
        ),
    )
    conn.execute("DELETE FROM parts WHERE message_id = ?", (message_id,))
    part_values: list[Any] = []
    _add_part_rows(part_values, message_id, new.parts)
    _insert_rows(conn, _part_values, _PART_WIDTH, part_values)
    _event(
        conn, message_id, now, target, f"replaced by the ESME (replace_sm), {len(new.parts)} parts"
    )
    fx.touch(Topic.QUEUE)
    return True


def reschedule(conn: sqlite3.Connection, message_id: str, not_before: float, now: float) -> None:
    """A queued message waits for its send window to open again."""
    target = _move_message(
        conn,
        message_id,
        MessageEvent.RESCHEDULE,
        now,
        ", not_before = ?, due_at = max(?, next_attempt_at)",
        (not_before, not_before),
    )
    _event(conn, message_id, now, target, f"send window opens at {iso(not_before)}")


def release_from_modem(
    conn: sqlite3.Connection, fx: Effects, message_id: str, modem: str, now: float
) -> bool:
    """Unbind a queued message from `modem`, which has been down too long: every part goes
    back to the queue and the whole message is sent again on another modem. False when the
    message is no longer queued on that modem."""
    row = conn.execute(
        "SELECT 1 FROM messages WHERE id = ? AND state = 'queued' AND modem = ?",
        (message_id, modem),
    ).fetchone()
    if row is None:
        return False
    target = _move_message(conn, message_id, MessageEvent.RELEASE, now, ", modem = NULL")
    for (index,) in conn.execute(
        "SELECT idx FROM parts WHERE message_id = ? ORDER BY idx", (message_id,)
    ).fetchall():
        _move_part(conn, message_id, index, PartEvent.RELEASE, ", reference = NULL, modem = NULL")
    _event(
        conn,
        message_id,
        now,
        target,
        f"modem {modem} is down; the whole message will be resent on another modem",
    )
    fx.touch(Topic.QUEUE)
    return True


# -- sending --------------------------------------------------------------------------------


def claim(
    conn: sqlite3.Connection, fx: Effects, assignments: Sequence[tuple[str, str]], now: float
) -> list[Claim]:
    """Move queued messages to `sending` on the given modems; return what was claimed.

    A message is claimed only as it is now, not as the dispatcher read it: one that left
    `queued` since (cancelled, expired), or that is no longer due (a replace_sm moved its
    schedule later), is left out, and one past its validity is expired as the sweep would.
    """
    target = message_move(MessageState.QUEUED, MessageEvent.CLAIM, final=False)
    claims: list[Claim] = []
    left_out: list[str] = []
    for message_id, modem in assignments:
        row = conn.execute(
            "UPDATE messages SET state = ?, modem = ?, updated_at = ?"
            f" WHERE id = ? AND state = 'queued' AND {DUE.sql()} AND NOT {EXPIRY.sql()}"
            " RETURNING recipient, status_report, validity_minutes, pid, expires_at, attempts,"
            " window_zone, window_first, window_last, window_opens, window_closes",
            (target, modem, now, message_id, now, now),
        ).fetchone()
        if row is None:
            left_out.append(message_id)
            continue
        _event(conn, message_id, now, target, f"claimed for modem {modem}")
        parts = tuple(
            ClaimedPart(
                index=index,
                part=EncodedPart(dcs=dcs, udh=udh, payload=payload),
                sent=state in WENT_OUT,
            )
            for index, dcs, udh, payload, state in conn.execute(
                "SELECT idx, dcs, udh, payload, state FROM parts WHERE message_id = ? ORDER BY idx",
                (message_id,),
            )
        )
        recipient, status_report, validity, pid, expires_at, attempts = row[:6]
        claims.append(
            Claim(
                id=message_id,
                modem=modem,
                recipient=recipient,
                status_report=bool(status_report),
                validity_minutes=validity,
                pid=pid,
                expires_at=expires_at,
                window=daily_window(row[6:]),
                attempts=attempts,
                parts=parts,
            )
        )
    if left_out:
        expire_due(conn, fx, now, left_out)
    return claims


def _with_part(
    conn: sqlite3.Connection, message_id: str, index: int
) -> tuple[MessageState, bool, MessageState]:
    """The message's state, whether it has reached its final outcome, and the part's state,
    in one read."""
    row = conn.execute(
        "SELECT m.state, m.dr_status, p.state FROM messages m JOIN parts p"
        " ON p.message_id = m.id WHERE m.id = ? AND p.idx = ?",
        (message_id, index),
    ).fetchone()
    if row is None:
        raise KeyError(f"no part {index} of message {message_id!r}")
    state = MessageState(row[0])
    return state, is_final(state, row[1]), MessageState(row[2])


def _send(
    conn: sqlite3.Connection, message_id: str, index: int, modem: str, now: float
) -> IllegalTransition | None:
    """Mark the part `sending` on `modem`; the refusal, with nothing written, unless its
    message is `sending` and not final and the part may be sent."""
    state, final, part = _with_part(conn, message_id, index)
    if final or state is not MessageState.SENDING or (part, PartEvent.SEND) not in PART_TRANSITIONS:
        return IllegalTransition(
            f"part {index} of {message_id}", state, PartEvent.SEND, final=final
        )
    _move_part(
        conn,
        message_id,
        index,
        PartEvent.SEND,
        ", modem = ?, attempts = attempts + 1",
        (modem,),
        state=part,
    )
    _event(conn, message_id, now, MessageState.SENDING, f"part {index} to modem {modem}", index)
    return None


def part_sending(
    conn: sqlite3.Connection, message_id: str, index: int, modem: str, now: float
) -> None:
    """The part is about to be handed to the modem; after a crash its fate is unknown.
    Refused (IllegalTransition) unless its message is `sending` and not final."""
    refused = _send(conn, message_id, index, modem, now)
    if refused is not None:
        raise refused


# A message becomes `sent` when its last part went out: the SMSC holds it until the latest of
# its parts' validities runs out there (none known: its own validity's end, see close_overdue).
_ALL_SENT = (
    ", error = NULL, sent_at = ?, smsc_expires_at ="
    " (SELECT max(smsc_expires_at) FROM parts WHERE message_id = messages.id)"
)


def part_sent(
    conn: sqlite3.Connection,
    message_id: str,
    index: int,
    reference: int,
    now: float,
    *,
    last: bool,
    next_part: tuple[str, int, str] | None = None,
    smsc_expires_at: float | None = None,
) -> PartSent:
    """The network took the part (TP-MR `reference`); with `last`, the message is `sent`.
    `smsc_expires_at`: when the validity the SMSC was given runs out (None: not known).

    With `next_part` (message id, index, modem), the worker's next part (of this message or of
    its next claim) is marked `sending` in the same commit, when it still may be sent: "part i
    sent" and "part i+1 sending" cost one commit, and a crash between them finds the same
    states as with two.
    """
    state, final, part = _with_part(conn, message_id, index)
    _move_part(
        conn,
        message_id,
        index,
        PartEvent.TAKEN,
        ", reference = ?, error = NULL, sent_at = ?, smsc_expires_at = ?",
        (reference, now, smsc_expires_at),
        state=part,
    )
    detail = f"part {index} sent, MR {reference}"
    if final:
        _event(conn, message_id, now, state, f"{detail}; the message was already {state}", index)
    elif last:
        target = _move_message(
            conn,
            message_id,
            MessageEvent.ALL_SENT,
            now,
            _ALL_SENT,
            (now,),
            current=(state, final),
        )
        _event(conn, message_id, now, target, detail, index)
    else:
        _event(conn, message_id, now, state, detail, index)
    next_sending = next_part is not None and _send(conn, *next_part, now) is None
    return PartSent(more=not final, next_sending=next_sending)


def mark_sent(conn: sqlite3.Connection, message_id: str, now: float) -> None:
    """Every part is out: the message is `sent` (waiting for status reports)."""
    target = _move_message(conn, message_id, MessageEvent.ALL_SENT, now, _ALL_SENT, (now,))
    _event(conn, message_id, now, target, "all parts sent")


def _part_failed(
    conn: sqlite3.Connection,
    message_id: str,
    part_index: int | None,
    event: PartEvent,
    error: str | None,
    now: float,
) -> bool:
    """Record a failed try of the part (if one was being sent); True when the message had
    reached its final outcome meanwhile (a status report of an earlier part), which then stays
    as it is."""
    state, final = _current(conn, message_id)
    if part_index is not None:
        _move_part(conn, message_id, part_index, event, ", error = ?", (error,))
    if final:
        _end_unsent(conn, (message_id,), state)
        detail = f"{error}; the message was already {state}"
        _event(conn, message_id, now, state, detail, part_index)
    return final


def requeue(
    conn: sqlite3.Connection,
    fx: Effects,
    message_id: str,
    *,
    next_attempt_at: float,
    error: str | None,
    counts_as_attempt: bool,
    part_index: int | None,
    now: float,
) -> None:
    """Back to `queued`, due at `next_attempt_at`. The modem is kept only when a part of the
    message already went out on it (every part of a message goes through one modem).

    When a status report made the message final meanwhile, only the part's fate is recorded.
    """
    if _part_failed(conn, message_id, part_index, PartEvent.RETRY, error, now):
        return
    target = _move_message(
        conn,
        message_id,
        MessageEvent.REQUEUE,
        now,
        ", error = ?, attempts = attempts + ?, next_attempt_at = ?, due_at = max(not_before, ?),"
        f" modem = {_KEEP_MODEM}",
        (error, int(counts_as_attempt), next_attempt_at, next_attempt_at),
    )
    _event(
        conn,
        message_id,
        now,
        target,
        f"{error or 'released'}; next attempt at {iso(next_attempt_at)}",
        part_index,
    )
    fx.touch(Topic.QUEUE)


def fail(
    conn: sqlite3.Connection,
    fx: Effects,
    message_id: str,
    *,
    error: str,
    dr_status: DrStatus,
    ext_status: str | None,
    part_index: int | None,
    counts_as_attempt: bool,
    now: float,
) -> None:
    """The message failed for good (`failed`, with its DR code). When a status report made it
    final meanwhile, only the part's fate is recorded."""
    if _part_failed(conn, message_id, part_index, PartEvent.REJECT, error, now):
        return
    if counts_as_attempt:
        conn.execute("UPDATE messages SET attempts = attempts + 1 WHERE id = ?", (message_id,))
    _finish(
        conn,
        fx,
        message_id,
        MessageEvent.FAIL,
        now,
        error=error,
        dr_status=dr_status,
        ext_status=ext_status,
    )


# A due time brought forward by _bring_forward: a not_before no later than the message's
# creation (the submit's own time) has come now too; one later than that, a client's schedule
# or a window's opening, is a time of the calendar and stays, also once it had come when the
# row was last written: the clock that saw it come was ahead, so it may be still to come. A
# next attempt is due as far after now as it was after the row was last written.
_DUE_NOT_BEFORE = (
    "CASE WHEN not_before <= created_at THEN min(not_before, :now) ELSE not_before END"
)
_DUE_NEXT_ATTEMPT = "min(next_attempt_at, :now + max(0, next_attempt_at - updated_at))"


def _bring_forward(conn: sqlite3.Connection, now: float) -> list[str]:
    """Messages waiting to go that were last written after `now`, under a clock that was
    ahead and has been set back since: their due time is taken back by the step, so that the
    queue does not wait for the clock to catch up. Absolute times (a client's schedule, a send
    window's opening, the validity) stay. Returns their ids."""
    # One state at a time, each read off its partial index (messages_expiry, messages_sending):
    # `state IN (...)` would read every message the store holds, at every start.
    rows = [
        row
        for state in (MessageState.QUEUED, MessageState.SENDING)
        for row in conn.execute(
            f"UPDATE messages SET not_before = {_DUE_NOT_BEFORE},"
            f" next_attempt_at = {_DUE_NEXT_ATTEMPT},"
            f" due_at = max({_DUE_NOT_BEFORE}, {_DUE_NEXT_ATTEMPT}), updated_at = :now"
            " WHERE state = :state AND updated_at > :now"
            " RETURNING id, state, due_at",
            {"now": now, "state": state},
        ).fetchall()
    ]
    conn.executemany(
        _INSERT_EVENT,
        [
            (message_id, now, state, None, f"clock set back; due at {iso(due)}")
            for message_id, state, due in rows
        ],
    )
    return [message_id for message_id, _, _ in rows]


def recover_in_flight(
    conn: sqlite3.Connection, fx: Effects, *, resend: bool, now: float
) -> Recovery:
    """Resolve messages left in `sending` by a crash or a stop, and bring forward the due
    times of those written under a clock set back since.

    Parts never handed to a modem simply go back to the queue. A part in `sending` may or
    may not have reached the network: with `resend` (at-least-once) it is queued again,
    otherwise (at-most-once) it and its message fail.
    """
    brought_forward = _bring_forward(conn, now)
    requeued: list[str] = []
    failed: list[str] = []
    # A part being sent when a status report made its message final: its fate stays unknown,
    # and nothing more of that message is sent. Read off the partial index parts_sending, as
    # the messages in flight are off messages_sending: a start reads no final part.
    for message_id, index in conn.execute(
        "SELECT parts.message_id, parts.idx FROM parts JOIN messages ON messages.id ="
        " parts.message_id WHERE parts.state = 'sending' AND messages.state != 'sending'"
    ).fetchall():
        detail = "was being sent when the gateway stopped; its message was final already"
        _move_part(conn, message_id, index, PartEvent.LOST, ", error = ?", (detail,))
    in_flight = conn.execute("SELECT id FROM messages WHERE state = 'sending'").fetchall()
    for (message_id,) in in_flight:
        unknown = [
            row[0]
            for row in conn.execute(
                "SELECT idx FROM parts WHERE message_id = ? AND state = 'sending' ORDER BY idx",
                (message_id,),
            )
        ]
        if unknown and not resend:
            detail = (
                f"part {unknown[0]} was being sent when the gateway stopped;"
                " not resent (policy: fail)"
            )
            for index in unknown:
                _move_part(conn, message_id, index, PartEvent.LOST, ", error = ?", (detail,))
            _finish(
                conn,
                fx,
                message_id,
                MessageEvent.FAIL,
                now,
                error=detail,
                dr_status=DrStatus.UNSPECIFIED,
            )
            failed.append(message_id)
            continue
        for index in unknown:
            _move_part(conn, message_id, index, PartEvent.RECOVER)
        target = _move_message(
            conn, message_id, MessageEvent.REQUEUE, now, f", modem = {_KEEP_MODEM}"
        )
        detail = "in flight when the gateway stopped; queued again"
        if unknown:
            detail += f" (part {unknown[0]} may be sent twice: policy resend)"
        _event(conn, message_id, now, target, detail)
        requeued.append(message_id)
    if requeued or brought_forward:
        fx.touch(Topic.QUEUE)
    return Recovery(requeued=requeued, failed=failed, brought_forward=brought_forward)


# -- status reports -------------------------------------------------------------------------


def record_report(
    conn: sqlite3.Connection,
    fx: Effects,
    message_id: str,
    index: int,
    *,
    delivered: bool | None,
    dr_status: DrStatus | None,
    raw: str,
    status: int,
    now: float,
) -> MessageState | None:
    """Record a part's status report (TP-ST `status`, `raw` in hex) and settle the message if
    that decides it. `delivered` None: the SMSC is still trying (history only). Returns the
    message's new final state, when the report decided it."""
    state, final = _current(conn, message_id)
    if delivered is None:
        detail = f"part {index}: status report TP-ST {raw}, the SMSC is still trying"
        _event(conn, message_id, now, state, detail, index)
        return None
    event = PartEvent.REPORT_DELIVERED if delivered else PartEvent.REPORT_FAILED
    try:
        _move_part(
            conn, message_id, index, event, ", report_status = ?, reported_at = ?", (status, now)
        )
    except IllegalTransition:
        detail = f"part {index}: another status report TP-ST {raw} after the final one; ignored"
        _event(conn, message_id, now, state, detail, index)
        return None
    if not delivered:
        assert dr_status is not None
        error = f"part {index} was not delivered: status report TP-ST {raw} (DR {int(dr_status)})"
        if final:
            _event(conn, message_id, now, state, error, index)
            return None
        return _finish(
            conn,
            fx,
            message_id,
            MessageEvent.FAIL,
            now,
            error=error,
            dr_status=dr_status,
            ext_status=raw,
        )
    undelivered = conn.execute(
        "SELECT count(*) FROM parts WHERE message_id = ? AND state != 'delivered'", (message_id,)
    ).fetchone()[0]
    # Already final (closed without a report, say): only the part's fate is recorded.
    if not undelivered and not final and (state, MessageEvent.DELIVER) in MESSAGE_TRANSITIONS:
        return _finish(
            conn,
            fx,
            message_id,
            MessageEvent.DELIVER,
            now,
            error=None,
            dr_status=DrStatus.DELIVERED,
            ext_status=raw,
        )
    _event(conn, message_id, now, state, f"part {index} delivered (TP-ST {raw})", index)
    return None


# When the SMSC gives a sent message up: the latest moment one of its parts' validities runs
# out there, or, where its sends recorded none (sent before schema 9), its own validity's end.
# The expression of the index messages_report_overdue, which the sweep's reads go by.
_SMSC_GIVES_UP = "coalesce(smsc_expires_at, expires_at)"
_AWAITING_REPORT = "state = 'sent' AND done_at IS NULL AND status_report = 1"


def on_modems(modems: Sequence[str] | None) -> str:
    """The condition that a row is of one of `modems` (None: of any). A filter of the rows the
    query's other terms find by their index, never the way to find them (`+modem`): an index
    that leads with the modem, such as inbound_parts_group, holds all of a modem's history."""
    return "" if modems is None else f" AND +modem IN ({','.join('?' * len(modems))})"


def next_overdue(conn: sqlite3.Connection, modems: Sequence[str] | None = None) -> float | None:
    """The earliest moment the SMSC gives up a sent message that awaits a status report, of
    those sent on `modems` (None: on any)."""
    row = conn.execute(
        f"SELECT {_SMSC_GIVES_UP} FROM messages WHERE {_AWAITING_REPORT}{on_modems(modems)}"
        f" ORDER BY {_SMSC_GIVES_UP} LIMIT 1",
        modems or (),
    ).fetchone()
    return None if row is None else float(row[0])


def close_overdue(
    conn: sqlite3.Connection,
    fx: Effects,
    before: float,
    now: float,
    modems: Sequence[str] | None = None,
) -> list[str]:
    """Close sent messages that asked for a status report and that the SMSC gave up before
    `before` without one, of those sent on `modems` (None: on any): they stay `sent`, with DR
    362."""
    overdue = conn.execute(
        f"SELECT id FROM messages WHERE {_AWAITING_REPORT} AND {_SMSC_GIVES_UP} <= ?"
        f"{on_modems(modems)}",
        (before, *(modems or ())),
    ).fetchall()
    closed = []
    for (message_id,) in overdue:
        _finish(
            conn,
            fx,
            message_id,
            MessageEvent.TIME_OUT,
            now,
            error=NO_REPORT_DETAIL,
            dr_status=DrStatus.TIMED_OUT_IN_SMSC,
        )
        closed.append(message_id)
    return closed


NO_REPORT_DETAIL = "no status report came before the validity period ended"
