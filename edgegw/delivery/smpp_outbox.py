"""The durable outbox to bound ESMEs: delivery receipts and MO as SQL run inside the store's
transactions (table `smpp_outbox`, schema v5).

A receipt is written in the transaction that makes its message final, an MO in the one that
stores it; never any I/O beyond the connection handed in. SMPP 3.4 sections 4.6.1, 5.2.28.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import Iterable
from typing import Final

import msgspec

from edgegw.model import NETWORK_TOOK_A_PART_SQL, MessageState
from edgegw.smpp.constants import CommandStatus
from edgegw.smpp.constants import MessageState as SmppState
from edgegw.smpp.outbound import MobileOriginated, Outbound, Receipt
from edgegw.smpp.submission import Address, ReceiptRequest

__all__ = [
    "MO",
    "RECEIPT",
    "enqueue_receipts",
    "enqueue_smpp_mo",
    "newest_items",
    "pending_outbound",
    "record_answer",
    "register_mo_services",
    "smpp_state",
]

# SMPP 3.4 section 5.2.5/5.2.6: international/ISDN, alphanumeric, unknown.
_INTERNATIONAL: Final = (1, 1)
_ALPHANUMERIC: Final = (5, 0)
_UNKNOWN: Final = (0, 0)
_FAILURES: Final = frozenset({SmppState.UNDELIVERABLE, SmppState.REJECTED, SmppState.EXPIRED})
# deliver_sm_resp statuses after which an item is never offered again (SMPP 3.4 5.1.3).
_REFUSED_FOR_GOOD: Final = frozenset({CommandStatus.ESME_RX_P_APPN, CommandStatus.ESME_RX_R_APPN})
# SMPP 3.4 section 5.2.19: data_coding 4, octet unspecified (8-bit binary).
_OCTET_UNSPECIFIED: Final = 4
# The kinds of item in the outbox.
RECEIPT: Final = "receipt"
MO: Final = "mo"
_INSERT: Final = (
    "INSERT INTO smpp_outbox (service_id, kind, message_id, payload, created_at)"
    " VALUES (?, ?, ?, ?, ?)"
)


def smpp_state(state: MessageState, dr_status: int | None, went_out: bool) -> SmppState:
    """SMPP 3.4 section 5.2.28 for a stored message's state; `went_out`, whether the network
    took any part of it (`NETWORK_TOOK_A_PART_SQL`). A message that failed before any part
    left us was refused (REJECTD); one closed `sent` without a report is UNKNOWN."""
    if state is MessageState.DELIVERED:
        return SmppState.DELIVERED
    if state is MessageState.FAILED:
        return SmppState.UNDELIVERABLE if went_out else SmppState.REJECTED
    if state is MessageState.EXPIRED:
        return SmppState.EXPIRED
    if state is MessageState.CANCELLED:
        return SmppState.DELETED
    if state is MessageState.SENT and dr_status is not None:
        return SmppState.UNKNOWN
    return SmppState.ENROUTE


def _address(value: str) -> Address:
    digits = value.removeprefix("+")
    if value.startswith("+") and digits.isdigit():
        return Address(*_INTERNATIONAL, digits)
    if digits.isdigit():
        return Address(*_UNKNOWN, digits)
    return Address(*_ALPHANUMERIC, value)


def _moment(epoch: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(epoch, dt.UTC)


def enqueue_receipts(conn: sqlite3.Connection, message_ids: Iterable[str], now: float) -> int:
    """Queue the delivery receipt of each message that reached its final outcome and asked for
    one by registered_delivery (every outcome, or failures only). Runs inside the transaction
    that made the outcome final (`edgegw.delivery.fanout.final_outcomes`). Returns how many
    were queued."""
    queued = 0
    for message_id in message_ids:
        row = conn.execute(
            f"SELECT service_id, registered_delivery, state, dr_status, {NETWORK_TOOK_A_PART_SQL},"
            " recipient, originator, content, created_at, done_at, user_message_reference"
            " FROM messages"
            " WHERE id = ? AND registered_delivery != 0",
            (message_id,),
        ).fetchone()
        if row is None:
            continue
        service_id, request, state, dr_status, went_out, recipient, originator = row[:7]
        content, created_at, done_at, user_message_reference = row[7:]
        message_state = smpp_state(MessageState(state), dr_status, bool(went_out))
        if message_state is SmppState.ENROUTE:
            continue
        if request == ReceiptRequest.FAILURE and message_state not in _FAILURES:
            continue
        receipt = Receipt(
            message_id=message_id,
            recipient=_address(recipient),
            originator=_address(originator),
            submit_date=_moment(created_at),
            done_date=_moment(now if done_at is None else done_at),
            message_state=message_state,
            error_code=dr_status or 0,
            text=content[:20],
            user_message_reference=user_message_reference,
        )
        conn.execute(_INSERT, (service_id, RECEIPT, message_id, msgspec.json.encode(receipt), now))
        queued += 1
    return queued


def register_mo_services(conn: sqlite3.Connection, service_ids: Iterable[int]) -> None:
    """Record which services take their MO by SMPP (`mo_smpp`); replaces what was there."""
    conn.execute("DELETE FROM smpp_mo_services")
    conn.executemany(
        "INSERT INTO smpp_mo_services (service_id) VALUES (?)", [(sid,) for sid in service_ids]
    )


def enqueue_smpp_mo(
    conn: sqlite3.Connection,
    *,
    message_id: str,
    service_id: int,
    sno: str,
    originator: str,
    content: str,
    octets: bytes | None = None,
    received_at: float,
) -> int:
    """Queue a complete inbound message for the service's ESMEs when it takes MO by SMPP; call
    it inside the transaction that stores the MO. 8-bit data (`octets`, which `content` shows
    as hex) goes as such, not as the text of its hex. Returns 1 when queued, else 0."""
    wanted = conn.execute(
        "SELECT 1 FROM smpp_mo_services WHERE service_id = ?", (service_id,)
    ).fetchone()
    if wanted is None:
        return 0
    source, destination = _address(originator), _address(sno)
    if octets is None:
        mo = MobileOriginated(source=source, destination=destination, text=content)
    else:
        mo = MobileOriginated(
            source=source,
            destination=destination,
            text=None,
            octets=octets,
            data_coding=_OCTET_UNSPECIFIED,
        )
    conn.execute(_INSERT, (service_id, MO, message_id, msgspec.json.encode(mo), received_at))
    return 1


def pending_outbound(
    conn: sqlite3.Connection, service_id: int, limit: int, exclude: frozenset[int]
) -> list[Outbound]:
    """Up to `limit` pending items of the service, oldest first, leaving out `exclude`."""
    rows = conn.execute(
        "SELECT id, kind, payload FROM smpp_outbox WHERE state = 'pending' AND service_id = ?"
        " ORDER BY id LIMIT ?",
        (service_id, limit + len(exclude)),
    ).fetchall()
    items: list[Outbound] = []
    for item_id, kind, payload in rows:
        if item_id in exclude:
            continue
        item: Receipt | MobileOriginated
        if kind == RECEIPT:
            item = msgspec.json.decode(payload, type=Receipt)
        else:
            item = msgspec.json.decode(payload, type=MobileOriginated)
        items.append(Outbound(id=item_id, item=item))
        if len(items) == limit:
            break
    return items


def record_answer(
    conn: sqlite3.Connection,
    outbound_id: int,
    command_status: int,
    now: float,
    *,
    for_good: bool = False,
) -> tuple[str, str] | None:
    """The ESME answered the item's deliver_sm: ESME_ROK delivers it; a permanent application
    error or a rejection (SMPP 3.4 5.1.3: ESME_RX_P_APPN, ESME_RX_R_APPN), or `for_good` (the
    gateway cannot offer it at all), settles it as refused, never offered again, and returns
    its (kind, message id) for the log; any other status leaves it pending, to be offered
    again (SMPP 3.4 4.6.2: the ESME may refuse for now)."""
    if command_status == 0:
        conn.execute(
            "UPDATE smpp_outbox SET state = 'delivered', attempts = attempts + 1,"
            " last_status = 0, done_at = ? WHERE id = ? AND state = 'pending'",
            (now, outbound_id),
        )
    elif for_good or command_status in _REFUSED_FOR_GOOD:
        row = conn.execute(
            "UPDATE smpp_outbox SET state = 'refused', attempts = attempts + 1,"
            " last_status = ?, done_at = ? WHERE id = ? AND state = 'pending'"
            " RETURNING kind, message_id",
            (command_status, now, outbound_id),
        ).fetchone()
        return None if row is None else (row[0], row[1])
    else:
        conn.execute(
            "UPDATE smpp_outbox SET attempts = attempts + 1, last_status = ?"
            " WHERE id = ? AND state = 'pending'",
            (command_status, outbound_id),
        )
    return None


def newest_items(conn: sqlite3.Connection, after_id: int) -> list[tuple[int, int]]:
    """(service id, newest item id) of the services with items added after `after_id`."""
    rows = conn.execute(
        "SELECT service_id, MAX(id) FROM smpp_outbox WHERE id > ? GROUP BY service_id",
        (after_id,),
    ).fetchall()
    return [(int(service_id), int(newest)) for service_id, newest in rows]
