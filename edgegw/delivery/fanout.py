"""The one notification step of the delivery layer: what a final outcome or a received MO
queues for the customer, inside the transaction that made it so.

The store calls `final_outcomes` (the composition root hands it to `Store`); the inbound
pipeline calls `mo_received`. Each queues the HTTP/email callback (`outbox`) and the SMPP
receipt or deliver_sm (`smpp_outbox`) the message asked for; adding a door adds a line here,
not a call in every writer.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from edgegw.delivery.outbox import enqueue_drs, enqueue_mo
from edgegw.delivery.smpp_outbox import enqueue_receipts, enqueue_smpp_mo


def final_outcomes(conn: sqlite3.Connection, message_ids: Sequence[str], now: float) -> None:
    """The messages reached their final outcome: queue the customer's DR and the SMPP receipt,
    each where the message and its service asked for one."""
    enqueue_drs(conn, message_ids, now)
    enqueue_receipts(conn, message_ids, now)


def mo_received(
    conn: sqlite3.Connection,
    *,
    message_id: str,
    service_id: int,
    sno: str,
    originator: str,
    content: str,
    octets: bytes | None,
    received_at: float,
    sc_timestamp: float,
    command: str,
    stripped_content: str,
) -> None:
    """An inbound message for `service_id` was stored: queue its MO callbacks (HTTP, email)
    and its deliver_sm for the service's bound ESMEs when it takes MO by SMPP. `octets` are
    the user data of 8-bit data (which `content` shows as hex), None for text."""
    enqueue_mo(
        conn,
        message_id=message_id,
        service_id=service_id,
        sno=sno,
        originator=originator,
        content=content,
        received_at=received_at,
        sc_timestamp=sc_timestamp,
        command=command,
        stripped_content=stripped_content,
    )
    enqueue_smpp_mo(
        conn,
        message_id=message_id,
        service_id=service_id,
        sno=sno,
        originator=originator,
        content=content,
        octets=octets,
        received_at=received_at,
    )
