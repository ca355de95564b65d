"""The store side of running many modems: recent sends for pacing and the queue per modem for
the health view (failover of a message stuck on a modem is the store's `release_from_modem`).

Queries only, run through `Store.read` / `Store.write`; no modem calls. ARCHITECTURE.md (the
flow: router; Concurrency rules).
"""

from __future__ import annotations

import sqlite3

import msgspec

from drivers.modem import Health
from edgegw.model import MessageState
from edgegw.store import Store


class ModemQueue(msgspec.Struct, kw_only=True):
    """Messages the gateway holds for one modem."""

    queued: int = 0  # queued and bound to this modem (a part already went out on it)
    sending: int = 0  # claimed by its worker


class ModemView(msgspec.Struct, kw_only=True):
    """One modem as `GET /api/modems` shows it: the driver's health and the gateway's view."""

    name: str
    health: Health
    queued: int  # messages queued and bound to this modem
    sending: int  # messages its worker holds
    sentLastHour: int  # parts sent in the last hour (pacing)
    sentLastDay: int  # parts sent in the last 24 hours (pacing)
    cappedUntil: str | None  # ISO 8601 UTC, while an hourly or daily cap holds it back


class ModemsView(msgspec.Struct, kw_only=True):
    modems: list[ModemView]
    queued: int  # queued messages not bound to any modem yet


async def recent_sends(store: Store, since: float) -> dict[str, list[float]]:
    """Send times of parts per modem since `since`, for `Pacer.load`."""

    def read(conn: sqlite3.Connection) -> dict[str, list[float]]:
        sends: dict[str, list[float]] = {}
        for modem, at in conn.execute(
            "SELECT modem, sent_at FROM parts WHERE sent_at >= ? AND modem IS NOT NULL", (since,)
        ):
            sends.setdefault(modem, []).append(at)
        return sends

    return await store.read(read)


async def queues(store: Store) -> tuple[dict[str, ModemQueue], int]:
    """Per modem, its queued and sending messages; and the queued messages not yet bound to
    any modem."""

    def read(conn: sqlite3.Connection) -> tuple[dict[str, ModemQueue], int]:
        per_modem: dict[str, ModemQueue] = {}
        unbound = 0
        for modem, state, count in conn.execute(
            "SELECT modem, state, count(*) FROM messages WHERE state = 'queued'"
            " GROUP BY modem UNION ALL SELECT modem, state, count(*) FROM messages"
            " WHERE state = 'sending' GROUP BY modem"
        ):
            if modem is None:
                unbound += count
                continue
            queue = per_modem.setdefault(modem, ModemQueue())
            if state == MessageState.QUEUED:
                queue.queued += count
            else:
                queue.sending += count
        return per_modem, unbound

    return await store.read(read)
