"""The AT driver's decisions about receiving, each a pure object or function the shell consults.

Pure: no trio, no I/O. Which storages are swept for messages not yet acknowledged (AT+CMGL=4,
TS 27.005 section 3.4.2): the one in use, then the status report storage "SR" where the modem
reads from it and every other one an indication pointed at (sections 3.2.2, 3.4.1); what
becomes of a directly delivered message (+CMT, +CDS) that the event buffer did or did not take
(AT+CNMA, section 3.4.4) and of one that does not decode, when the modem's indications must be
set again, what a read of the storage found (sections 3.4.3, 3.5.4), and which stored PDUs that
do not decode are reported (once each).
"""

from __future__ import annotations

import enum
from typing import Final

import msgspec

from drivers.at.commands import CmsError, Cnmi, StoredPdu, StoredStat
from drivers.at.framer import FinalKind, FinalResult, Urc
from drivers.gsm import GsmError, split_sca

REPORT_STORAGE: Final = "SR"  # the status report storage, TS 27.005 section 3.2.2


class Stored(msgspec.Struct, frozen=True):
    """+CMTI or +CDSI: a message or report waits at `index` of `storage`."""

    storage: str
    index: int


class Direct(msgspec.Struct, frozen=True):
    """+CMT or +CDS: the PDU came with the indication and must be acknowledged (+CNMA)."""

    urc: Urc


class Sweep(msgspec.Struct, frozen=True):
    """Look through the storage now (after a re-initialisation, or when an indication was lost)."""


class Restarted(msgspec.Struct, frozen=True):
    """The modem said it restarted (RDY), or a health poll or a send's echo found its settings
    gone: initialise it again, then sweep."""

    line: str


Indication = Stored | Direct | Sweep | Restarted


class StoragesSeen:
    """The storages a sweep lists: the one in use first, then, in name order, every other one
    an indication (+CMTI, +CDSI) has pointed at on any connection, and the status report
    storage of a modem that reads from one."""

    def __init__(self) -> None:
        self._seen: set[str] = set()

    def indicated(self, storage: str) -> None:
        self._seen.add(storage)

    def readable(self, storages: frozenset[str]) -> None:
        """The storages the modem reads from (the <mem1>s of AT+CPMS=?). Received status
        reports are stored in "SR" where a modem has it (TS 27.005 section 3.2.2, <mem3>), so
        it is swept from the first sweep on: reports that came while nothing read the modem
        wait there with no +CDSI to point at them."""
        if REPORT_STORAGE in storages:
            self._seen.add(REPORT_STORAGE)

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
    at the next sweep. One that does not decode is `UndecodableDirect`'s to decide."""
    if not cnma:
        return DirectStep.DONE if buffered else DirectStep.WAIT_FOR_ROOM
    return DirectStep.ACKNOWLEDGE if buffered else DirectStep.LEAVE_UNACKNOWLEDGED


class IndicationsOff:
    """Whether the modem may have turned its new-message indications off, so that AT+CNMI
    must be set again: it does so when a direct message (+CMT, +CDS) goes unacknowledged
    (TS 27.005 section 3.4.1), because the gateway had no room for it, the backlog of
    indications was full, or AT+CNMA came too late. Due until a setting is accepted."""

    def __init__(self) -> None:
        self.pending = False

    def unacknowledged(self) -> None:
        self.pending = True

    def dropped(self, indication: Indication) -> None:
        """The backlog had no room for `indication`: a stored message is found by the next
        sweep, a direct one goes unacknowledged."""
        if isinstance(indication, Direct):
            self.pending = True

    def due(self, setting: Cnmi | None) -> Cnmi | None:
        """The setting to give again now, if any; none when none was accepted at all."""
        return setting if self.pending else None

    def set_again(self, *, ok: bool) -> None:
        self.pending = not ok


class UndecodableSeen:
    """Stored PDUs that do not decode, each counted, logged and (with `delete_undecodable`)
    deleted once: every sweep lists them again. Only the PDU last reported at each storage and
    index is remembered: a new undecodable message at a reused index (or a new garbling of a
    read on a bad cable) is reported too, and the table holds at most one PDU a slot however
    many come while the gateway runs."""

    def __init__(self) -> None:
        self._seen: dict[tuple[str, int], bytes] = {}

    def first_time(self, storage: str, index: int, pdu: bytes) -> bool:
        slot = (storage, index)
        if self._seen.get(slot) == pdu:
            return False
        self._seen[slot] = pdu
        return True


class UndecodableDirect:
    """Directly delivered PDUs (+CMT, +CDS) that do not decode. While the modem waits for
    AT+CNMA, the first copy is left unacknowledged: garbled on the line, it comes whole with
    the network's next delivery, which the modem stores once it has turned indications off
    (section 3.4.1) and a sweep reads. The same octets again are what the network holds: they
    are acknowledged, so that it stops sending them, and kept in the log. The last `KEPT`
    refused indications (header and PDU line) are remembered, each counted once. A header whose
    PDU line never came has no octets to tell one SMS from another (every SMS of that length
    has that header): it is refused each time, never acknowledged as a repeat."""

    KEPT: Final = 64

    def __init__(self) -> None:
        self._refused: dict[Urc, None] = {}  # in the order refused

    def first_time(self, urc: Urc) -> bool:
        """True for an indication not refused before (count it; with AT+CNMA, refuse it);
        False for a repeat, now forgotten: acknowledged, the network will not send it again."""
        if urc.pdu is None:
            return True
        if urc in self._refused:
            del self._refused[urc]
            return False
        self._refused[urc] = None
        if len(self._refused) > self.KEPT:
            del self._refused[next(iter(self._refused))]
        return True


def needs_switch(storage: str, in_use: str) -> bool:
    """Whether reading or deleting in `storage` first points <mem1> there (AT+CPMS, section
    3.2.2): status reports may wait in "SR" while messages are in "SM". Not when either is
    unknown (a modem that never said), nor for the storage in use."""
    return bool(storage and in_use and storage != in_use)


def is_received(stat: int) -> bool:
    """REC UNREAD or REC READ; stored outgoing messages (STO ...) are not ours to emit."""
    return stat in (StoredStat.REC_UNREAD, StoredStat.REC_READ)


# +CMS ERROR answers of AT+CMGR that mean "nothing stored there".
_EMPTY_INDEX: Final = frozenset({CmsError.INVALID_MEMORY_INDEX, CmsError.UNKNOWN_ERROR})


def is_empty_index(final: FinalResult) -> bool:
    """Whether an error answer of AT+CMGR says the index holds nothing (rather than that the
    modem cannot read it now)."""
    return final.kind is FinalKind.CMS_ERROR and final.code in _EMPTY_INDEX


def still_holds(stored: StoredPdu | None, tpdu: bytes) -> bool:
    """Whether the index just read still holds the message `tpdu`: after a reconnect it may
    hold a newer one, once the acknowledged one was deleted by a delete whose answer was lost."""
    if stored is None:
        return False
    try:
        return split_sca(stored.pdu)[1] == tpdu
    except GsmError:
        return False
