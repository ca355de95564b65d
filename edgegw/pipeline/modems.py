"""The pipeline's side of running many modems: what a modem reports (an inbound SMS or a
status report is committed before the modem may delete it from the SIM; a health change wakes
the dispatcher), recent sends for pacing, and the modems' view of `GET /api/modems`.
Failover of a message stuck on a modem is the store's `release_from_modem`.

README, Design rules (the flow, the store is the queue).
"""

from __future__ import annotations

import datetime
import functools
import logging
import sqlite3
from collections.abc import Callable, Iterable, Mapping

import msgspec

from drivers.events import (
    HealthChanged,
    InboundSms,
    ModemState,
    RegistrationChanged,
    StatusReportReceived,
    StorageRead,
)
from drivers.modem import Health, Modem
from edgegw.clock import Clock
from edgegw.model import MessageState
from edgegw.pipeline.inbound import InboundReceiver
from edgegw.pipeline.pacing import Pacer
from edgegw.pipeline.reports import ReportCorrelator
from edgegw.pipeline.storagereads import StorageReads
from edgegw.store import Store

log = logging.getLogger(__name__)
_LOGGED_BY_DRIVER = frozenset((ModemState.FAILED, ModemState.QUARANTINED))


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


def sends_since(
    conn: sqlite3.Connection, since: float, modems: Iterable[str]
) -> dict[str, list[float]]:
    """Send times of parts per modem of `modems` since `since` (and any dated later), each
    modem's read off the index parts_modem_sent within its own range: the store keeps the sends
    of 30 days, a read of every one made each start slower as it grew."""
    sends: dict[str, list[float]] = {}
    for modem in modems:
        times = [
            at
            for (at,) in conn.execute(
                "SELECT sent_at FROM parts WHERE modem = ? AND sent_at >= ?", (modem, since)
            )
        ]
        if times:
            sends[modem] = times
    return sends


async def recent_sends(store: Store, since: float, modems: Iterable[str]) -> dict[str, list[float]]:
    """Send times of parts per modem of `modems` since `since`, for `Pacer.load`."""
    return await store.read(functools.partial(sends_since, since=since, modems=tuple(modems)))


def queue_counts(conn: sqlite3.Connection) -> tuple[dict[str, ModemQueue], int]:
    """Per modem, its queued and sending messages; and the queued messages not yet bound to
    any modem. One statement, so one snapshot: the queued bound to a modem (a few) off the
    index messages_queued_modem, all queued counted off a queued index alone and the sending
    off theirs, never the row of each queued message (the status page reads this every 2 s)."""
    per_modem: dict[str, ModemQueue] = {}
    queued = 0
    for modem, state, count in conn.execute(
        "SELECT modem, state, count(*) FROM messages"
        " WHERE state = 'queued' AND modem IS NOT NULL GROUP BY modem"
        " UNION ALL SELECT modem, state, count(*) FROM messages"
        " WHERE state = 'sending' GROUP BY modem"
        " UNION ALL SELECT NULL, NULL, count(*) FROM messages WHERE state = 'queued'"
    ):
        if modem is None:
            queued = count
        elif state == MessageState.QUEUED:
            per_modem.setdefault(modem, ModemQueue()).queued = count
        else:
            per_modem.setdefault(modem, ModemQueue()).sending = count
    return per_modem, queued - sum(queue.queued for queue in per_modem.values())


async def queues(store: Store) -> tuple[dict[str, ModemQueue], int]:
    """Per modem, its queued and sending messages, and the queued bound to none
    (`queue_counts`)."""
    return await store.read(queue_counts)


async def forward_events(
    modem: Modem,
    inbound: InboundReceiver,
    reports: ReportCorrelator,
    wake: Callable[[], None],
    reads: StorageReads,
    clock: Clock,
) -> None:
    """Handle what `modem` reports until it stops: health changes wake the dispatcher (`wake`),
    received messages and status reports are committed, then acknowledged; the first whole
    read of its storage is recorded in `reads` once all it emitted before is committed, and so
    is each change of its registration, with its time."""
    all_stored = True
    async for event in modem.events:
        if isinstance(event, RegistrationChanged):
            reads.registration(event.modem, event.registered, clock.now())
        elif isinstance(event, HealthChanged):
            # A failure or a quarantine the driver has logged already, in the same words:
            # once more at INFO doubled every line of an unplugged modem.
            if event.state not in _LOGGED_BY_DRIVER:
                log.info("modem %s: %s (%s)", event.modem, event.state, event.detail)
            wake()
        elif isinstance(event, StorageRead):
            # The events before it are handled one at a time, each committed before the next.
            # One that could not be stored waits on the SIM for a later sweep: the storage is
            # not in the store yet, and the sweeps wait for it as for a modem never read.
            if all_stored:
                reads.read(event.modem)
            else:
                log.info("modem %s: read its storage, not all of it stored", event.modem)
        else:
            all_stored = await store_and_acknowledge(modem, event, inbound, reports) and all_stored


async def store_and_acknowledge(
    modem: Modem,
    event: InboundSms | StatusReportReceived,
    inbound: InboundReceiver,
    reports: ReportCorrelator,
) -> bool:
    """Commit the event, then let the modem delete it from the SIM; False when it could not be
    committed. If the store fails the SMS stays on the SIM, and the driver's next sweep of
    stored messages brings it again."""

    try:
        if isinstance(event, InboundSms):
            await inbound.receive(event)
        else:
            await reports.receive(event)
    except Exception:
        log.exception("modem %s: could not store a received %s", modem.name, type(event))
        return False
    try:
        await modem.acknowledge(event)
    except Exception:
        # Stored already; a re-read of the same PDU is a no-op, so nothing is lost.
        log.exception("modem %s: could not delete a stored message", modem.name)
    return True


async def modems_view(
    store: Store, modems: Mapping[str, Modem], pacer: Pacer, now: float
) -> ModemsView:
    """Each modem's health with its queue and pacing, as `GET /api/modems` shows them."""
    per_modem, unbound = await queues(store)
    views = []
    for name, modem in modems.items():
        in_hour, in_day = pacer.counts(name, now)
        capped_until = pacer.capped_until(name, now)
        queue = per_modem.get(name)
        views.append(
            ModemView(
                name=name,
                health=modem.health(),
                queued=0 if queue is None else queue.queued,
                sending=0 if queue is None else queue.sending,
                sentLastHour=in_hour,
                sentLastDay=in_day,
                cappedUntil=None if capped_until is None else iso_seconds(capped_until),
            )
        )
    return ModemsView(modems=views, queued=unbound)


def iso_seconds(epoch: float) -> str:
    moment = datetime.datetime.fromtimestamp(epoch, datetime.UTC)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")
