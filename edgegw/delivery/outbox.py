"""The durable outbox of MO and DR callbacks: SQL run inside the store's transactions.

An item is written in the same transaction that makes its MO or DR exist, and marked delivered
only after the customer's HTTP 200 (spec 3.5). Never does I/O of its own beyond the connection
it is handed. Delivery is at-least-once: a crash between the customer's 200 and our commit
re-sends that one item with the same `messageid`, on which customers de-duplicate (spec 3.1).
"""

from __future__ import annotations

import enum
import sqlite3
from collections.abc import Iterable, Sequence
from typing import Final

import msgspec

from edgegw.delivery.payload import CallbackKind, DrReport, MoReport, mo_time
from edgegw.model import MessageState, dr_description, is_final
from edgegw.store.transactions import note

__all__ = [
    "Endpoint",
    "ItemState",
    "OutboxItem",
    "backoff_delay",
    "bound_waits",
    "due_items",
    "enqueue_drs",
    "enqueue_mo",
    "next_due",
    "outbox_items",
    "record_delivered",
    "record_failure",
    "register_endpoints",
]


class Endpoint(enum.StrEnum):
    """Where a service's callbacks go; one delivery task runs per (service, endpoint)."""

    MO = "mo"  # [services.mo]: HTTP GET or POST
    DR = "dr"  # [services.dr]: HTTP GET or POST
    MO_EMAIL = "mo_email"  # [services.mo_email]: through the SMTP relay

    @property
    def kind(self) -> CallbackKind:
        return CallbackKind.DR if self is Endpoint.DR else CallbackKind.MO


class ItemState(enum.StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    ABANDONED = "abandoned"


class OutboxItem(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    kind: CallbackKind
    service_id: int
    endpoint: Endpoint
    message_id: str  # the MO's id, or the MT's id a DR reports on
    payload: bytes  # JSON of the MoReport or DrReport
    created_at: float
    attempts: int
    next_attempt_at: float
    state: ItemState
    last_error: str | None
    last_status: int | None
    done_at: float | None

    def report(self) -> MoReport | DrReport:
        if self.kind is CallbackKind.DR:
            return msgspec.json.decode(self.payload, type=DrReport)
        return msgspec.json.decode(self.payload, type=MoReport)


_ITEM_COLUMNS: Final = (
    "id, kind, service_id, endpoint, message_id, payload, created_at, attempts,"
    " next_attempt_at, state, last_error, last_status, done_at"
)
_INSERT_ITEM: Final = (
    "INSERT INTO outbox (kind, service_id, endpoint, message_id, payload, created_at,"
    " next_attempt_at) VALUES (?, ?, ?, ?, ?, ?, ?)"
)
# extstatusdescription when the network gave no text of its own.
_STATE_DESCRIPTIONS: Final = {
    MessageState.DELIVERED: "Delivered",
    MessageState.FAILED: "Failed",
    MessageState.EXPIRED: "Expired",
    MessageState.CANCELLED: "Cancelled",
    MessageState.SENT: "No report",  # closed without a status report (DR 362)
}


def _item(row: Sequence[object]) -> OutboxItem:
    return msgspec.convert(
        dict(zip(_ITEM_COLUMNS.replace(" ", "").split(","), row, strict=True)), OutboxItem
    )


def register_endpoints(
    conn: sqlite3.Connection, endpoints: Iterable[tuple[int, Endpoint, str]]
) -> None:
    """Record which (service id, endpoint, service name) the configuration delivers to, so the
    transactions that create MOs and DRs know whether to enqueue. Replaces what was there."""
    conn.execute("DELETE FROM delivery_endpoints")
    conn.executemany(
        "INSERT INTO delivery_endpoints (service_id, endpoint, service_name) VALUES (?, ?, ?)",
        [(service_id, str(endpoint), name) for service_id, endpoint, name in endpoints],
    )


def enqueue_mo(
    conn: sqlite3.Connection,
    *,
    message_id: str,
    service_id: int,
    sno: str,
    originator: str,
    content: str,
    received_at: float,
    sc_timestamp: float,
    command: str,
    stripped_content: str,
) -> int:
    """Queue a complete inbound message (MO) for the service's MO endpoints; call it inside the
    transaction that stores the MO, so both commit together. `received_at` is when the MO
    entered the gateway, `sc_timestamp` the SMSC's TP-SCTS (epoch seconds); `command` and
    `stripped_content` are the keyword routing's (edgegw.pipeline.keywords). Returns how many
    items were queued (0 when the service has no MO endpoint)."""
    endpoints = conn.execute(
        "SELECT endpoint, service_name FROM delivery_endpoints"
        " WHERE service_id = ? AND endpoint IN ('mo', 'mo_email')",
        (service_id,),
    ).fetchall()
    if not endpoints:
        return 0
    timestamp = mo_time(received_at)
    report = MoReport(
        messageid=message_id,
        serviceid=service_id,
        servicename=endpoints[0][1],
        sno=sno,
        originator=originator,
        content=content,
        command=command,
        strippedcontent=stripped_content,
        timestamp=timestamp,
        sctimestamp=mo_time(sc_timestamp),
    )
    payload = msgspec.json.encode(report)
    conn.executemany(
        _INSERT_ITEM,
        [
            ("mo", service_id, endpoint, message_id, payload, received_at, received_at)
            for endpoint, _ in endpoints
        ],
    )
    return len(endpoints)


def enqueue_drs(conn: sqlite3.Connection, message_ids: Iterable[str], now: float) -> int:
    """Queue the customer DR of each message that reached its final outcome (a final state, or
    `sent` closed with a DR code when no status report came), when the message asked
    for one (`report_to_customer`, off with `skip_customer_report_delivery`) and its service has
    a DR endpoint. Runs inside the transaction that made the outcome final (through
    `edgegw.delivery.fanout.final_outcomes`)."""
    queued = 0
    for message_id in message_ids:
        row = conn.execute(
            "SELECT m.service_id, e.service_name, m.batch_reference, m.client_reference,"
            " m.originator, m.state, m.dr_status, m.ext_status FROM messages m"
            " JOIN delivery_endpoints e ON e.service_id = m.service_id AND e.endpoint = 'dr'"
            " WHERE m.id = ? AND m.report_to_customer = 1",
            (message_id,),
        ).fetchone()
        if row is None:
            continue
        service_id, name, batch, client_ref, originator, state, dr_status, ext_status = row
        state = MessageState(state)
        if not is_final(state, dr_status):
            continue
        report = DrReport(
            messageid=message_id,
            customerbatchreference=batch,
            customermessagereference=client_ref or "",
            serviceid=service_id,
            servicename=name,
            statuscode=dr_status,
            statusdescription=dr_description(dr_status),
            extstatuscode=ext_status or "",
            extstatusdescription=_STATE_DESCRIPTIONS[state],
            originator=originator,
        )
        conn.execute(
            _INSERT_ITEM,
            ("dr", service_id, "dr", message_id, msgspec.json.encode(report), now, now),
        )
        queued += 1
    return queued


def due_items(
    conn: sqlite3.Connection, service_id: int, endpoint: Endpoint, now: float, limit: int
) -> list[OutboxItem]:
    """Pending items of one endpoint whose time has come, oldest first."""
    rows = conn.execute(
        f"SELECT {_ITEM_COLUMNS} FROM outbox WHERE state = 'pending' AND service_id = ?"
        " AND endpoint = ? AND next_attempt_at <= ? ORDER BY next_attempt_at, id LIMIT ?",
        (service_id, str(endpoint), now, limit),
    ).fetchall()
    return [_item(row) for row in rows]


def next_due(conn: sqlite3.Connection, service_id: int, endpoint: Endpoint) -> float | None:
    """When the endpoint's earliest pending item is due; None when nothing is pending."""
    row = conn.execute(
        "SELECT next_attempt_at FROM outbox WHERE state = 'pending' AND service_id = ?"
        " AND endpoint = ? ORDER BY next_attempt_at LIMIT 1",
        (service_id, str(endpoint)),
    ).fetchone()
    return None if row is None else float(row[0])


def record_delivered(
    conn: sqlite3.Connection, items: Sequence[OutboxItem], now: float, status: int | None
) -> None:
    """The customer took these items (HTTP 200, or the relay's 250 for email)."""
    conn.executemany(
        "UPDATE outbox SET state = 'delivered', attempts = attempts + 1, last_status = ?,"
        " last_error = NULL, done_at = ? WHERE id = ? AND state = 'pending'",
        [(status, now, item.id) for item in items],
    )
    for item in items:
        if item.kind is CallbackKind.DR:
            note(conn, item.message_id, now, f"DR delivered to the customer ({status})")


def backoff_delay(attempts: int, initial: float, maximum: float) -> float:
    """Seconds before the next try after `attempts` failed ones: initial, 2x, 4x... up to max."""
    return min(maximum, initial * 2.0 ** min(attempts - 1, 62))


def bound_waits(
    conn: sqlite3.Connection,
    service_id: int,
    endpoint: Endpoint,
    now: float,
    *,
    retry_initial: float,
    retry_max: float,
) -> None:
    """Bring forward the endpoint's pending items that are due later than their backoff allows
    from `now`: a time written under a clock that was ahead and has been set back since. An
    item never tried is due now, one tried `attempts` times a backoff step after now, so that
    a clock set back an hour does not hold a callback for that hour."""
    rows = conn.execute(
        "SELECT id, attempts, next_attempt_at FROM outbox WHERE state = 'pending'"
        " AND service_id = ? AND endpoint = ? AND next_attempt_at > ?",
        (service_id, str(endpoint), now),
    ).fetchall()
    updates = []
    for item_id, attempts, due in rows:
        latest = now + backoff_delay(attempts, retry_initial, retry_max) if attempts else now
        if due > latest:
            updates.append((latest, item_id))
    conn.executemany("UPDATE outbox SET next_attempt_at = ? WHERE id = ?", updates)


def record_failure(
    conn: sqlite3.Connection,
    items: Sequence[OutboxItem],
    now: float,
    *,
    error: str,
    status: int | None,
    retry_initial: float,
    retry_max: float,
    give_up_after: float,
) -> list[OutboxItem]:
    """A try failed: each item waits `retry_initial * 2**(attempts - 1)` (at most `retry_max`),
    or is abandoned once it is `give_up_after` seconds old. Returns the abandoned ones."""
    abandoned: list[OutboxItem] = []
    for item in items:
        attempts = item.attempts + 1
        if now - item.created_at >= give_up_after:
            reason = f"abandoned after {attempts} attempts: {error}"
            conn.execute(
                "UPDATE outbox SET state = 'abandoned', attempts = ?, last_status = ?,"
                " last_error = ?, done_at = ? WHERE id = ? AND state = 'pending'",
                (attempts, status, reason, now, item.id),
            )
            abandoned.append(item)
            if item.kind is CallbackKind.DR:
                note(conn, item.message_id, now, f"DR to the customer {reason}")
            continue
        delay = backoff_delay(attempts, retry_initial, retry_max)
        conn.execute(
            "UPDATE outbox SET attempts = ?, next_attempt_at = ?, last_status = ?,"
            " last_error = ? WHERE id = ? AND state = 'pending'",
            (attempts, now + delay, status, error, item.id),
        )
    return abandoned


def outbox_items(conn: sqlite3.Connection, *, message_id: str | None = None) -> list[OutboxItem]:
    """Items in insertion order, optionally of one message."""
    if message_id is None:
        rows = conn.execute(f"SELECT {_ITEM_COLUMNS} FROM outbox ORDER BY id")
    else:
        rows = conn.execute(
            f"SELECT {_ITEM_COLUMNS} FROM outbox WHERE message_id = ? ORDER BY id", (message_id,)
        )
    return [_item(row) for row in rows]
