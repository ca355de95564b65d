"""Inbound SMS: store each received part, reassemble concatenated messages from the stored parts,
route them to a service, and store what never completes as incomplete after a timeout.

One store write per received part; the modem may delete the SMS only after it committed. Never
keeps a part only in memory. Spec section 3.1 (MO fields); TS 23.040 9.2.3.24.1 (concatenation).
"""

from __future__ import annotations

import datetime
import logging
import math
import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec
import trio

from drivers.events import InboundSms
from drivers.gsm import EncodedPart, concat_info, concatenated_octets, decode_concatenated
from edgegw.clock import Clock
from edgegw.delivery.fanout import mo_received
from edgegw.delivery.payload import MO_TYPE, NETWORK_UNKNOWN, mo_time
from edgegw.ids import MessageIdGenerator
from edgegw.model import InboundView
from edgegw.pipeline.keywords import InboundRouter
from edgegw.pipeline.storagereads import StorageReads
from edgegw.store import Store
from edgegw.store.transactions import on_modems

log = logging.getLogger(__name__)

MAX_LIST = 1000  # the most messages one `GET /api/inbound` returns
# Parts stored and not yet in a message: the groups waiting for their other parts.
_PENDING = "message_id IS NULL AND duplicate = 0"
SWEEP_RETRY = 60.0  # seconds before the sweeper tries again after an error


class Received(msgspec.Struct, frozen=True, kw_only=True):
    """What storing one received part did."""

    # False: this very PDU was stored before (a re-read after a restart), or it is one whose
    # contents are discarded (TS 23.040 9.2.3.9, short message type 0)
    stored: bool
    duplicate: bool  # a copy of a part already stored (also True for a re-read PDU)
    message_id: str | None  # the inbound message this part completed, if any
    # an older message of the same reference that this part's new text stored incomplete
    superseded: str | None = None


class InboundRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One stored inbound message, as pipeline code and tests inspect it."""

    id: str
    service_id: int | None
    modem: str
    sno: str
    originator: str
    content: str
    command: str
    stripped_content: str
    dcs: int
    received_at: float
    sc_timestamp: str  # ISO 8601 with the SMSC's offset
    complete: bool
    parts_expected: int
    parts_received: int


_INSERT_PART = """INSERT INTO inbound_parts (
    modem, storage, storage_index, smsc, originator, sc_timestamp, pid, dcs, udh, payload,
    concat_ref, concat_total, concat_seq, received_at, pdu
) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)
ON CONFLICT (modem, pdu) DO NOTHING RETURNING id"""

_INSERT_MESSAGE = """INSERT INTO inbound_messages (
    id, service_id, modem, sno, originator, content, command, stripped_content, dcs,
    received_at, sc_timestamp, complete, parts_expected, parts_received
) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"""

_RECORD_COLUMNS = (
    "id, service_id, modem, sno, originator, content, command, stripped_content, dcs,"
    " received_at, sc_timestamp, complete, parts_expected, parts_received"
)

# Parts of one concatenated message: same modem, originator, reference and total.
_GROUP = "modem = ? AND originator = ? AND concat_ref = ? AND concat_total = ?"

# When a stored part began to wait for the rest of its message: when it was received, or, for
# one dated after now (stored under a clock that was ahead and has been set back since, so
# before this start), the start of the sweeper, from which a part stored before a stop waits.
# Its two parameters: now, and the sweeper's start.
_WAITING_SINCE = "CASE WHEN received_at > ? THEN ? ELSE received_at END"


class InboundReceiver:
    """Stores inbound parts as the gateway receives them, and runs the reassembly sweeper."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        router: InboundRouter,
        *,
        reassembly_timeout: float,
        numbers: Mapping[str, str] | None = None,
        ids: MessageIdGenerator | None = None,
        reads: StorageReads | None = None,
    ) -> None:
        self._store = store
        self._clock = clock
        self._router = router
        self._timeout = reassembly_timeout
        self._numbers = dict(numbers or {})
        self._ids = ids or MessageIdGenerator()
        self._wakeup = trio.Event()
        # When the sweeper started: a part stored before a stop waits until its modem has read
        # its SIM (`reads`), where the rest of its message may be, or at most the timeout from
        # then.
        self._running_since = -math.inf
        self._reads = reads or StorageReads()
        self._reads.subscribe(self.wake)
        self.received = 0  # parts stored
        self.duplicates = 0  # parts ignored as copies
        self.incomplete = 0  # messages stored incomplete after the timeout

    async def receive(self, event: InboundSms) -> Received:
        """Store the part in one write; if it completes a message, reassemble it in the same
        transaction. Returns after the commit: only then may the modem delete the SMS."""
        deliver = event.deliver
        if deliver.to_discard:
            # Acknowledged (the modem may delete it) and never stored, routed or delivered.
            log.info(
                "modem %s: short message type 0 from %r discarded", event.modem, deliver.originator
            )
            return Received(stored=False, duplicate=False, message_id=None)
        now = self._clock.now()
        concat = concat_info(deliver.udh)
        if concat is not None and concat[1] == 1:
            concat = None  # a "1 of 1" header: a whole message on its own
        ref, total, seq = concat if concat is not None else (None, None, None)
        row = (
            event.modem,
            event.storage,
            event.index,
            event.smsc,
            deliver.originator,
            deliver.timestamp.isoformat(),
            deliver.pid,
            deliver.dcs,
            deliver.udh,
            deliver.payload,
            ref,
            total,
            seq,
            now,
            event.pdu,
        )
        # The first id names the older message this part may close (a reused reference).
        older_id, message_id = self._ids.next_ids(now, 2)

        def store_part(conn: sqlite3.Connection) -> Received:
            inserted = conn.execute(_INSERT_PART, row).fetchone()
            if inserted is None:
                return Received(stored=False, duplicate=True, message_id=None)
            part_id = inserted[0]
            if ref is None:
                self._assemble(conn, [part_id], message_id, now, expected=1, complete=True)
                return Received(stored=True, duplicate=False, message_id=message_id)
            group = (event.modem, deliver.originator, ref, total)
            # A copy (same payload) of a part whose group is still open, or of a part of a
            # message completed within the reassembly timeout, is a duplicate, not a new message.
            copy = conn.execute(
                f"SELECT 1 FROM inbound_parts WHERE {_GROUP} AND concat_seq = ? AND id != ?"
                " AND duplicate = 0 AND payload = ? AND (message_id IS NULL OR received_at >= ?)"
                " LIMIT 1",
                (*group, seq, part_id, deliver.payload, now - self._timeout),
            ).fetchone()
            if copy is not None:
                conn.execute("UPDATE inbound_parts SET duplicate = 1 WHERE id = ?", (part_id,))
                return Received(stored=True, duplicate=True, message_id=None)
            # The open group already has this part with another text: the sender reused the
            # reference (it wraps after 256 messages) while the older message still missed
            # parts. That one will get no more parts it could be told from: it is stored
            # incomplete now, and this part opens the group of the new message.
            superseded = conn.execute(
                f"SELECT 1 FROM inbound_parts WHERE {_GROUP} AND concat_seq = ? AND id != ?"
                " AND duplicate = 0 AND message_id IS NULL LIMIT 1",
                (*group, seq, part_id),
            ).fetchone()
            assert total is not None
            closed = None
            if superseded is not None:
                older = self._open_parts(conn, group, excluding=part_id)
                self._assemble(conn, older, older_id, now, expected=total, complete=False)
                closed = older_id
            open_parts = self._open_parts(conn, group)
            if len(open_parts) < total:
                return Received(stored=True, duplicate=False, message_id=None, superseded=closed)
            self._assemble(conn, open_parts, message_id, now, expected=total, complete=True)
            return Received(stored=True, duplicate=False, message_id=message_id, superseded=closed)

        received = await self._store.write(store_part)
        if received.stored:
            self.received += 1
        if received.superseded is not None:
            self.incomplete += 1
            log.warning(
                "inbound %s stored incomplete: its sender reused the reference for a new message",
                received.superseded,
            )
        if received.duplicate:
            self.duplicates += 1
            # %r: a sender chooses its alphanumeric name, line breaks included (GSM 03.38).
            log.info(
                "modem %s: part from %r ignored as a duplicate", event.modem, deliver.originator
            )
        elif received.message_id is None:
            self._wakeup.set()  # a new open group: the sweeper's next deadline may be earlier
        return received

    @staticmethod
    def _open_parts(
        conn: sqlite3.Connection, group: Sequence[Any], *, excluding: int | None = None
    ) -> list[int]:
        """The ids of the group's parts not yet in a message, in sequence order."""
        return [
            found
            for (found,) in conn.execute(
                f"SELECT id FROM inbound_parts WHERE {_GROUP} AND message_id IS NULL"
                " AND duplicate = 0 AND id IS NOT ? ORDER BY concat_seq",
                (*group, excluding),
            )
        ]

    def _assemble(
        self,
        conn: sqlite3.Connection,
        part_ids: Sequence[int],
        message_id: str,
        now: float,
        *,
        expected: int,
        complete: bool,
    ) -> None:
        """Join the parts (in sequence order) into one routed inbound message."""
        marks = ",".join("?" * len(part_ids))
        rows = conn.execute(
            "SELECT modem, originator, sc_timestamp, dcs, udh, payload, concat_seq"
            f" FROM inbound_parts WHERE id IN ({marks}) ORDER BY concat_seq",
            tuple(part_ids),
        ).fetchall()
        modem, originator, sc_timestamp, dcs = rows[0][:4]
        parts = [EncodedPart(dcs=row[3], udh=row[4], payload=row[5]) for row in rows]
        content = decode_concatenated(parts)
        route = self._router.route(modem, content, has_start=rows[0][6] in (None, 1))
        if route.service_id is None:
            log.warning(
                "inbound %s from %r on modem %s matches no keyword and the modem names no"
                " service; kept without a service",
                message_id,
                originator,
                modem,
            )
        conn.execute(
            _INSERT_MESSAGE,
            (
                message_id,
                route.service_id,
                modem,
                self._numbers.get(modem) or modem,
                originator,
                content,
                route.command,
                route.stripped_content,
                dcs,
                now,
                sc_timestamp,
                int(complete),
                expected,
                len(rows),
            ),
        )
        conn.execute(
            f"UPDATE inbound_parts SET message_id = ? WHERE id IN ({marks})",
            (message_id, *part_ids),
        )
        if route.service_id is not None:
            # The customer's MO callbacks are queued in this same transaction (edgegw.delivery).
            mo_received(
                conn,
                message_id=message_id,
                service_id=route.service_id,
                sno=self._numbers.get(modem) or modem,
                originator=originator,
                content=content,
                octets=concatenated_octets(parts),
                received_at=now,
                sc_timestamp=datetime.datetime.fromisoformat(sc_timestamp).timestamp(),
                command=route.command,
                stripped_content=route.stripped_content,
            )
            self._store.effects.queued_for_customers()

    # -- the reassembly sweeper ---------------------------------------------------------------

    def wake(self) -> None:
        """Sweep now: a modem read its SIM."""
        self._wakeup.set()

    async def deliver_overdue(self, now: float | None = None) -> list[str]:
        """Store every group whose first part waited longer than the reassembly timeout, and
        after a start until its modem read its SIM, as an incomplete message; return their
        ids."""
        at = self._clock.now() if now is None else now
        modems = self._reads.released(self._running_since, self._timeout, at)
        if modems == ():
            return []

        def overdue(conn: sqlite3.Connection) -> list[tuple[Any, ...]]:
            return conn.execute(
                "SELECT modem, originator, concat_ref, concat_total FROM inbound_parts"
                f" WHERE {_PENDING}{on_modems(modems)}"
                " GROUP BY modem, originator, concat_ref, concat_total"
                f" HAVING min({_WAITING_SINCE}) <= ?",
                (*(modems or ()), at, self._running_since, at - self._timeout),
            ).fetchall()

        groups = await self._store.read(overdue)
        if not groups:
            return []
        message_ids = self._ids.next_ids(at, len(groups))

        def assemble(conn: sqlite3.Connection) -> list[str]:
            done: list[str] = []
            for group, message_id in zip(groups, message_ids, strict=True):
                part_ids = self._open_parts(conn, group)
                if part_ids:
                    self._assemble(
                        conn, part_ids, message_id, at, expected=group[3], complete=False
                    )
                    done.append(message_id)
            return done

        done = await self._store.write(assemble)
        self.incomplete += len(done)
        for message_id in done:
            log.warning("inbound %s stored incomplete: parts missing after the timeout", message_id)
        return done

    async def next_deadline(self) -> float | None:
        """When the oldest open group runs out of time, or the wait after a start for modems
        yet to read their SIM ends (one that reads it wakes the sweeper); None when no group is
        open."""
        now = self._clock.now()
        modems = self._reads.released(self._running_since, self._timeout, now)
        since = (now, self._running_since)

        def oldest(conn: sqlite3.Connection) -> tuple[Any, Any]:
            # Of every open group, and of those on modems released from the wait.
            row: tuple[Any, Any] = conn.execute(
                f"SELECT (SELECT min({_WAITING_SINCE}) FROM inbound_parts WHERE {_PENDING}),"
                f" (SELECT min({_WAITING_SINCE}) FROM inbound_parts WHERE {_PENDING}"
                f"{on_modems(modems)})",
                (*since, *since, *(modems or ())),
            ).fetchone()
            return row

        first, released = await self._store.read(oldest)
        if first is None:
            return None
        release = self._reads.next_release(self._running_since, self._timeout, now)
        if release is None:  # the wait after the start is over: `modems` is None
            return float(first) + self._timeout
        deadlines = [release]
        if released is not None:
            deadlines.append(float(released) + self._timeout)
        return min(deadlines)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The sweeper: store overdue groups incomplete, then sleep until the next deadline or
        until a new group opens."""
        self._running_since = self._clock.now()
        task_status.started()
        while True:
            self._wakeup = trio.Event()
            try:
                await self.deliver_overdue()
                deadline = await self.next_deadline()
            except Exception:
                # The sweeper's error boundary (a store shutting down, a disk error): the parts
                # stay stored, so trying again later loses nothing.
                log.exception("inbound reassembly sweeper failed; trying again")
                deadline = self._clock.now() + SWEEP_RETRY
            wake_at = math.inf if deadline is None else self._clock.trio_deadline(deadline)
            with trio.move_on_at(wake_at):
                await self._wakeup.wait()


# ---------------------------------------------------------------------------------------------
# Typed reads.


def _record(row: Sequence[Any]) -> InboundRecord:
    return InboundRecord(
        id=row[0],
        service_id=row[1],
        modem=row[2],
        sno=row[3],
        originator=row[4],
        content=row[5],
        command=row[6],
        stripped_content=row[7],
        dcs=row[8],
        received_at=row[9],
        sc_timestamp=row[10],
        complete=bool(row[11]),
        parts_expected=row[12],
        parts_received=row[13],
    )


def inbound_view(record: InboundRecord, service_names: Mapping[int, str]) -> InboundView:
    received = datetime.datetime.fromtimestamp(record.received_at, datetime.UTC)
    return InboundView(
        messageid=record.id,
        serviceid=record.service_id,
        servicename="" if record.service_id is None else service_names.get(record.service_id, ""),
        sno=record.sno,
        originator=record.originator,
        mcc=NETWORK_UNKNOWN,
        mnc=NETWORK_UNKNOWN,
        content=record.content,
        command=record.command,
        strippedcontent=record.stripped_content,
        type=MO_TYPE,
        timestamp=mo_time(record.received_at),
        sctimestamp=mo_time(datetime.datetime.fromisoformat(record.sc_timestamp).timestamp()),
        sessionid="",
        modem=record.modem,
        complete=record.complete,
        partsExpected=record.parts_expected,
        partsReceived=record.parts_received,
        receivedAt=received.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
    )


async def inbound_record(store: Store, message_id: str) -> InboundRecord | None:
    def read(conn: sqlite3.Connection) -> InboundRecord | None:
        row = conn.execute(
            f"SELECT {_RECORD_COLUMNS} FROM inbound_messages WHERE id = ?", (message_id,)
        ).fetchone()
        return None if row is None else _record(row)

    return await store.read(read)


async def service_inbound_view(
    store: Store, service_id: int, message_id: str, service_names: Mapping[int, str]
) -> InboundView | None:
    """The inbound message `message_id` as `GET /api/inbound/{id}` shows it to its service;
    None when there is none, or it is another service's (or kept without one)."""
    record = await inbound_record(store, message_id)
    if record is None or record.service_id != service_id:
        return None
    return inbound_view(record, service_names)


async def inbound_records(
    store: Store,
    *,
    service_id: int | None,
    since: float | None = None,
    limit: int = 100,
    all_services: bool = False,
) -> list[InboundRecord]:
    """A service's inbound messages received after `since`, newest first (at most `limit`).
    With `all_services`, every service's and those kept without one."""
    limit = max(1, min(limit, MAX_LIST))
    conditions: list[str] = []
    params: list[Any] = []
    if not all_services:
        if service_id is None:
            conditions.append("service_id IS NULL")
        else:
            conditions.append("service_id = ?")
            params.append(service_id)
    if since is not None:
        conditions.append("received_at > ?")
        params.append(since)
    where = f" WHERE {' AND '.join(conditions)}" if conditions else ""

    def read(conn: sqlite3.Connection) -> list[InboundRecord]:
        return [
            _record(row)
            for row in conn.execute(
                f"SELECT {_RECORD_COLUMNS} FROM inbound_messages{where}"
                " ORDER BY received_at DESC, id DESC LIMIT ?",
                (*params, limit),
            )
        ]

    return await store.read(read)
