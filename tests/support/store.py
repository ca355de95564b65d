"""What the store tests share: the epoch they start at, a message builder and a running store.
Never asserts anything itself; the tests decide what to check."""

from __future__ import annotations

from pathlib import Path

import trio

from drivers.gsm import encode_message
from edgegw.clock import Clock
from edgegw.store import NewMessage, Store

START = 1_754_380_800.0  # 2025-08-05T08:00:00Z


def new_message(
    message_id: str,
    *,
    text: str = "Hello",
    priority: int = 2,
    now: float = START,
    expires_in: float = 3600.0,
    service_id: int = 1,
) -> NewMessage:
    encoded = encode_message(text, reference=7)
    return NewMessage(
        id=message_id,
        service_id=service_id,
        batch_reference="batch-1",
        client_reference=f"ref-{message_id}",
        recipient="+4741000000",
        originator="Edge",
        originator_type="ALPHANUMERIC",
        content=encoded.text,
        alphabet=encoded.alphabet.value,
        priority=priority,
        validity_minutes=int(expires_in // 60),
        not_before=now,
        expires_at=now + expires_in,
        status_report=True,
        report_to_customer=False,
        pid=0,
        flash=False,
        created_at=now,
        window=None,
        parts=encoded.parts,
    )


async def start_store(path: Path, nursery: trio.Nursery) -> Store:
    """A store on `path`, its writer running in `nursery`, its clock at START."""
    running = Store(path, clock=Clock(start_epoch=START))
    await nursery.start(running.run)
    return running
