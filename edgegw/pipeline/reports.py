"""Delivery reports: match each SMS-STATUS-REPORT to the part it reports on, record the part's
fate, and move the message to its final state once its parts decide it.

The match is on stored data only (modem, TP-MR, recipient, a send within a window that still
awaits its report, the one nearest the report's TP-SCTS), so it survives TP-MR wrap-around and
restarts. A report never crashes the gateway: one that matches nothing is kept as unmatched.
Spec section 4.4 (DR codes); TS 23.040 9.2.3.15 (TP-ST).

A sent message whose report never comes is closed `grace` seconds after the SMSC gives it up
(the validity its parts' TP-VP gave there runs out, TS 23.040 9.2.3.12.1): it stays `sent` and
gets DR 362 ("timed out in the SMSC before delivery"); time the gateway was down does not
count, as the report may wait on the SIM: after a start, a message given up before it waits
until its modem has read its SIM (`StorageReads`), or `grace` from the start.
"""

from __future__ import annotations

import datetime
import functools
import logging
import math
import sqlite3
from typing import Any, NamedTuple

import msgspec
import trio

from drivers.events import StatusReportReceived
from edgegw.clock import Clock
from edgegw.model import MessageState
from edgegw.pipeline.drstatus import ReportOutcome, dr_status, ext_status, report_outcome
from edgegw.pipeline.storagereads import StorageReads
from edgegw.store import Store, transactions

log = logging.getLogger(__name__)

# Seconds between attempts to match reports that came before their part was recorded.
REMATCH_POLL = 1.0
# The longest the sweeper sleeps: nothing tells it when a message becomes sent, so it looks
# again at least this often for validities about to run out.
SWEEP_MAX = 60.0
# The fewest trailing digits two numbers must share when one is national and one international.
MIN_SHARED_DIGITS = 7
NO_REPORT_DETAIL = transactions.NO_REPORT_DETAIL


class ReportResult(msgspec.Struct, frozen=True, kw_only=True):
    """What one status report did."""

    stored: bool  # False: this very report was stored before (a re-read after a restart)
    message_id: str | None  # the message it matched, None when unmatched
    part: int | None
    outcome: ReportOutcome
    final: MessageState | None  # the message's new final state, when the report decided it


def same_number(sent_to: str, reported: str) -> bool:
    """True when the report's recipient is the number the part was sent to. Networks may
    report an international number in national format, so trailing digits decide."""
    a = "".join(c for c in sent_to if c.isdigit())
    b = "".join(c for c in reported if c.isdigit())
    if not a or not b:
        return sent_to == reported
    short, long = sorted((a, b), key=len)
    return short == long or (len(short) >= MIN_SHARED_DIGITS and long.endswith(short))


class Match(NamedTuple):
    """The part a report fits, and whether that part still awaits its final report."""

    message_id: str
    part: int
    awaiting: bool


def _clock_offset(conn: sqlite3.Connection, modem: str) -> float:
    """How far the box's clock was ahead of the SMSC's at the last report matched on `modem`:
    its part's send time less its TP-SCTS (0 before any). The two clocks need not agree."""
    # The modem's matched reports, newest first: the unmatched ones after the last matched one
    # (every report since, on a modem whose reports stopped matching) are not read.
    row = conn.execute(
        "SELECT status_reports.sc_timestamp, parts.sent_at"
        " FROM status_reports INDEXED BY status_reports_matched"
        " JOIN parts ON parts.message_id = status_reports.message_id"
        " AND parts.idx = status_reports.part"
        " WHERE status_reports.modem = ? AND status_reports.message_id IS NOT NULL"
        " ORDER BY status_reports.id DESC LIMIT 1",
        (modem,),
    ).fetchone()
    if row is None:
        return 0.0
    return float(row[1]) - datetime.datetime.fromisoformat(row[0]).timestamp()


def _match(
    conn: sqlite3.Connection,
    modem: str,
    reference: int,
    recipient: str,
    submitted: float,
    received_at: float,
    window: float,
) -> Match | None:
    """The part sent on `modem` with TP-MR `reference` to `recipient` within `window` seconds
    before `received_at`, preferring one that still awaits its final report (else the report
    may be another of a part already reported on). Where the TP-MR came round again, the part
    sent nearest `submitted`, when the SMSC took the SMS-SUBMIT (the report's TP-SCTS, TS 23.040
    9.2.2.3), read on the box's clock: a late report of an older send is not a newer send's."""
    # By (modem, TP-MR): a store keeping keep_final_days (30) of parts holds 1/256 of a modem's
    # parts under one TP-MR, against a tenth of them within the window (3 days). Left to
    # itself, SQLite took (modem, sent_at) to save sorting the few rows found, and read every
    # part of the modem's window for each report: 4.8 against 0.23 ms with 300,000 parts.
    rows = conn.execute(
        "SELECT parts.message_id, parts.idx, parts.state, parts.sent_at, messages.recipient"
        " FROM parts INDEXED BY parts_reference JOIN messages ON messages.id = parts.message_id"
        " WHERE parts.modem = ? AND parts.reference = ? AND parts.sent_at >= ?"
        " ORDER BY parts.sent_at DESC",
        (modem, reference, received_at - window),
    )
    candidates = [
        (Match(message_id, index, awaiting=state == MessageState.SENT), sent_at)
        for message_id, index, state, sent_at, sent_to in rows
        if same_number(sent_to, recipient)
    ]
    if len(candidates) < 2:
        return candidates[0][0] if candidates else None
    sent_then = submitted + _clock_offset(conn, modem)
    # min() keeps the first of equals: the most recent send.
    return min(candidates, key=lambda c: (not c[0].awaiting, abs(c[1] - sent_then)))[0]


def _apply(
    conn: sqlite3.Connection,
    fx: transactions.Effects,
    message_id: str,
    index: int,
    status: int,
    now: float,
) -> MessageState | None:
    """Record TP-ST `status` on the part and settle the message if that decides it."""
    outcome = report_outcome(status)
    return transactions.record_report(
        conn,
        fx,
        message_id,
        index,
        delivered=None if outcome is ReportOutcome.PENDING else outcome is ReportOutcome.DELIVERED,
        dr_status=dr_status(status),
        raw=ext_status(status),
        status=status,
        now=now,
    )


class ReportCorrelator:
    """Matches status reports as the gateway receives them, and runs the sweeper that matches
    late ones again and closes messages whose report never came."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        *,
        window: float,
        grace: float,
        rematch: float,
        reads: StorageReads | None = None,
    ) -> None:
        self._store = store
        self._clock = clock
        self._window = window
        self._grace = grace
        self._rematch = rematch
        self._wakeup = trio.Event()
        # When the sweeper started: a message the SMSC gave up while the gateway was down
        # waits until its modem has read its SIM (`reads`), where the report may be, or at
        # most a grace from then.
        self._running_since = -math.inf
        self._reads = reads or StorageReads()
        self._reads.subscribe(self.wake)
        self.matched = 0
        self.unmatched = 0  # reports that matched no part when they came
        self.timed_out = 0  # messages closed without a report

    async def receive(self, event: StatusReportReceived) -> ReportResult:
        """Store and apply one report in one write; returns after the commit (only then may
        the modem delete it)."""
        now = self._clock.now()
        report = event.report
        outcome = report_outcome(report.status)
        row = (
            event.modem,
            report.message_reference,
            report.recipient,
            report.status,
            report.sc_timestamp.isoformat(),
            report.discharge_time.isoformat(),
            now,
            event.pdu,
        )
        rematch_until = now + self._rematch if self._rematch > 0 else None

        def correlate(conn: sqlite3.Connection) -> ReportResult:
            inserted = conn.execute(
                "INSERT INTO status_reports (modem, reference, recipient, status, sc_timestamp,"
                " discharge_time, received_at, pdu) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (modem, pdu) DO NOTHING RETURNING id",
                row,
            ).fetchone()
            if inserted is None:
                return ReportResult(
                    stored=False, message_id=None, part=None, outcome=outcome, final=None
                )
            match = _match(
                conn,
                event.modem,
                report.message_reference,
                report.recipient,
                report.sc_timestamp.timestamp(),
                now,
                self._window,
            )
            # A report that only fits a part already reported on may be the report of a part
            # whose send is not recorded yet, its TP-MR reused 256 sends later: it waits for
            # that part as long as an unmatched one does.
            if match is None or (not match.awaiting and rematch_until is not None):
                conn.execute(
                    "UPDATE status_reports SET rematch_until = ? WHERE id = ?",
                    (rematch_until, inserted[0]),
                )
                return ReportResult(
                    stored=True, message_id=None, part=None, outcome=outcome, final=None
                )
            message_id, index, _ = match
            conn.execute(
                "UPDATE status_reports SET message_id = ?, part = ? WHERE id = ?",
                (message_id, index, inserted[0]),
            )
            final = _apply(conn, self._store.effects, message_id, index, report.status, now)
            return ReportResult(
                stored=True, message_id=message_id, part=index, outcome=outcome, final=final
            )

        result = await self._store.write(correlate)
        if result.stored and result.message_id is None:
            self.unmatched += 1
            if rematch_until is None:
                # Never matched again (`rematch` 0): it stays unmatched now, which is news.
                log.warning(
                    "modem %s: status report MR %d for %s (TP-ST %s) matches no sent part;"
                    " it stays unmatched",
                    event.modem,
                    report.message_reference,
                    report.recipient,
                    ext_status(report.status),
                )
            else:
                # At info: one that overtook its part's commit matches a moment later; one
                # that matches nothing within its rematch time is a warning then.
                log.info(
                    "modem %s: status report MR %d for %s (TP-ST %s) matches no part awaiting"
                    " it yet",
                    event.modem,
                    report.message_reference,
                    report.recipient,
                    ext_status(report.status),
                )
                self._wakeup.set()
        elif result.stored:
            self.matched += 1
        return result

    async def rematch_due(self, now: float | None = None) -> list[str]:
        """Match again the reports that matched nothing when they came; those whose time ran
        out stay unmatched for good. Returns the ids of messages they now matched."""
        at = self._clock.now() if now is None else now

        def rematch(conn: sqlite3.Connection) -> list[str]:
            matched: list[str] = []
            pending = conn.execute(
                "SELECT id, modem, reference, recipient, status, sc_timestamp, received_at,"
                " rematch_until FROM status_reports WHERE rematch_until IS NOT NULL"
            ).fetchall()
            for row in pending:
                report_id, modem, reference, recipient, status, scts, received_at, until = row
                submitted = datetime.datetime.fromisoformat(scts).timestamp()
                match = _match(
                    conn, modem, reference, recipient, submitted, received_at, self._window
                )
                waits = until > at
                if match is None and not waits:
                    conn.execute(
                        "UPDATE status_reports SET rematch_until = NULL WHERE id = ?",
                        (report_id,),
                    )
                    log.warning(
                        "modem %s: status report MR %d for %s stays unmatched",
                        modem,
                        reference,
                        recipient,
                    )
                # Its time ran out: a report that only fits a part already reported on is that
                # part's (and recorded in its history).
                if match is None or (waits and not match.awaiting):
                    continue
                message_id, index, _ = match
                conn.execute(
                    "UPDATE status_reports SET message_id = ?, part = ?, rematch_until = NULL"
                    " WHERE id = ?",
                    (message_id, index, report_id),
                )
                _apply(conn, self._store.effects, message_id, index, status, at)
                matched.append(message_id)
            return matched

        matched = await self._store.write(rematch)
        self.matched += len(matched)
        return matched

    def wake(self) -> None:
        """Sweep now: a modem read its SIM."""
        self._wakeup.set()

    async def close_overdue(self, now: float | None = None) -> list[str]:
        """Close sent messages whose report did not come within `grace` after the SMSC gave
        them up, nor from their modem's SIM after a start."""
        at = self._clock.now() if now is None else now
        modems = self._reads.released(self._running_since, self._grace, at)
        if modems == ():
            return []
        close = functools.partial(
            transactions.close_overdue,
            fx=self._store.effects,
            before=at - self._grace,
            now=at,
            modems=modems,
        )
        closed = await self._store.write(close)
        self.timed_out += len(closed)
        return closed

    async def next_wake(self) -> float:
        """The next time the sweeper has work: a pending rematch, the SMSC giving a sent
        message up, or the end of the wait after a start for modems yet to read their SIM (one
        that reads it wakes the sweeper)."""
        now = self._clock.now()
        modems = self._reads.released(self._running_since, self._grace, now)

        def earliest(conn: sqlite3.Connection) -> tuple[float | None, Any]:
            pending = conn.execute(
                "SELECT 1 FROM status_reports WHERE rematch_until IS NOT NULL LIMIT 1"
            ).fetchone()
            return transactions.next_overdue(conn, modems), pending

        expiry, pending = await self._store.read(earliest)
        times = [now + SWEEP_MAX]
        if expiry is not None:
            times.append(expiry + self._grace)
        if (release := self._reads.next_release(self._running_since, self._grace, now)) is not None:
            times.append(release)
        if pending is not None:
            times.append(now + REMATCH_POLL)
        return min(times)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        self._running_since = self._clock.now()
        task_status.started()
        while True:
            self._wakeup = trio.Event()
            try:
                await self.rematch_due()
                await self.close_overdue()
                wake = await self.next_wake()
            except Exception:
                # The sweeper's error boundary (a store shutting down, a disk error): try again
                # later; reports keep being stored meanwhile.
                log.exception("status report sweeper failed; trying again")
                wake = self._clock.now() + SWEEP_MAX
            with trio.move_on_at(self._clock.trio_deadline(wake)):
                await self._wakeup.wait()
