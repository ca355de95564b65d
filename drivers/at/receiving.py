"""The AT driver's decisions about receiving, each a pure object or function the shell consults.

Pure: no trio, no I/O; time is the `now` argument. When the storages are swept for messages not
yet acknowledged (AT+CMGL=4, TS 27.005 section 3.4.2) and which ones: the one in use, then every
other one an indication pointed at (status reports may wait in "SR", section 3.4.1); what
becomes of a directly delivered message (+CMT, +CDS) that the event buffer did or did not take
(AT+CNMA, section 3.4.4).
"""

from __future__ import annotations

import enum
import math


class SweepSchedule:
    """Sweeps happen at once on a new connection, then `interval` seconds after the last one
    (0: only when asked, after a re-initialisation, a deferred delete or a lost indication)."""

    def __init__(self, interval: float, now: float) -> None:
        self.interval = interval
        self.next_at = now

    def due(self, now: float) -> bool:
        return now >= self.next_at

    def swept(self, now: float) -> None:
        self.next_at = now + self.interval if self.interval > 0 else math.inf


class StoragesSeen:
    """The storages a sweep lists: the one in use first, then, in name order, every other one
    an indication (+CMTI, +CDSI) has pointed at on any connection."""

    def __init__(self) -> None:
        self._seen: set[str] = set()

    def indicated(self, storage: str) -> None:
        self._seen.add(storage)

    def sweep_order(self, in_use: str) -> list[str]:
        return [in_use, *sorted(self._seen - {in_use})]


class DirectStep(enum.Enum):
    ACKNOWLEDGE = "acknowledge"  # in the buffer: AT+CNMA, so the network counts it delivered
    DONE = "done"  # in the buffer; the modem acknowledged it by itself
    WAIT_FOR_ROOM = "wait-for-room"  # acknowledged by the modem already: wait for room
    LEAVE_UNACKNOWLEDGED = "leave-unacknowledged"  # no room: the network delivers it again


def direct_step(*, buffered: bool, cnma: bool) -> DirectStep:
    """What follows a +CMT/+CDS the event buffer did (`buffered`) or did not take, where
    `cnma` says whether the modem waits for our AT+CNMA (AT+CSMS=1 was accepted). Left
    unacknowledged, the modem turns indications off (section 3.4.1): the shell sets them again
    at the next sweep. An undecodable one counts as buffered: it is kept in the log, and
    refusing it would only make the network send it again and again."""
    if not cnma:
        return DirectStep.DONE if buffered else DirectStep.WAIT_FOR_ROOM
    return DirectStep.ACKNOWLEDGE if buffered else DirectStep.LEAVE_UNACKNOWLEDGED
