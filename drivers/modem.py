"""The one interface through which the gateway sees a modem.

A driver sends encoded parts and returns the network's message reference (TP-MR), reports its
health, and emits events (`drivers.events`). Implementations: `drivers.at.AtModem` (real and
simulated modems alike, over a serial transport).
"""

from __future__ import annotations

from typing import Protocol

import msgspec
import trio

from drivers.events import InboundSms, ModemEvent, ModemState, StatusReportReceived
from drivers.gsm.parts import EncodedPart


class OutgoingPart(msgspec.Struct, frozen=True, kw_only=True):
    """One SMS-SUBMIT to send: a part plus the TPDU fields that do not depend on the text."""

    recipient: str  # E.164 with a leading "+", or a national/short number without one
    part: EncodedPart
    status_report: bool = False  # TP-SRR
    validity_minutes: int | None = None  # TP-VP, relative format; None leaves it out
    pid: int = 0  # TP-PID


class Health(msgspec.Struct, kw_only=True):
    state: ModemState = ModemState.STARTING
    detail: str = ""
    sim: str = ""  # +CPIN answer, e.g. "READY", "SIM PIN"
    sent: int = 0
    errors: int = 0
    recoveries: int = 0
    resyncs: int = 0  # lost answers recovered on the open port (a resync, then a retry)
    # Where and what the modem is (TS 27.007 sections 5.1-5.4; ICCID from the SIM).
    port: str = ""  # the device path in use, "" when none is open
    manufacturer: str = ""
    model: str = ""
    imei: str = ""
    iccid: str = ""
    # The network as last seen (+CREG/+CEREG, +COPS, +CSQ).
    registration: str = ""  # "home", "roaming", "searching", "denied", ...; "" unknown
    operator: str = ""
    rssi: int | None = None  # +CSQ <rssi> 0..31; None when not known
    signal_dbm: int | None = None
    storage: str = ""  # where received messages are kept (+CPMS), e.g. "SM"
    # Counters since the driver started.
    received: int = 0  # SMS-DELIVER events emitted
    reports: int = 0  # SMS-STATUS-REPORT events emitted
    undecodable: int = 0  # stored or delivered PDUs that would not decode
    garbage_lines: int = 0  # lines from the modem that were neither answer nor URC
    events_dropped: int = 0  # HealthChanged events that found the buffer full
    last_error: str = ""


class ModemError(Exception):
    """A send did not reach the network. `permanent` says whether retrying can help."""

    permanent: bool = False

    def __init__(self, message: str, *, cms: int | None = None) -> None:
        super().__init__(message)
        self.cms = cms


class SendRejected(ModemError):
    """The network or the modem refused this part (`+CMS ERROR`); the modem itself is fine."""

    def __init__(self, message: str, *, cms: int | None = None, permanent: bool) -> None:
        super().__init__(message, cms=cms)
        self.permanent = permanent


class ModemUnavailable(ModemError):
    """The modem cannot send now (not ready, timed out, port gone); another try may succeed."""


class SendOutcomeUnknown(ModemUnavailable):
    """The modem took the PDU but its answer was lost: the part may or may not have gone out.
    Sending it again is at-least-once, as `in_flight_after_crash = "resend"` is."""


class Modem(Protocol):
    name: str

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Open, initialise and keep the modem going until cancelled; `started()` once ready."""
        ...

    async def send(self, outgoing: OutgoingPart) -> int:
        """Send one part; return TP-MR. Raises `ModemError` subclasses only."""
        ...

    async def acknowledge(self, event: InboundSms | StatusReportReceived) -> None:
        """The gateway has committed `event`; the modem may now delete it from its storage.
        A delete the modem cannot do now is done later; this does not raise for that."""
        ...

    def health(self) -> Health: ...

    @property
    def events(self) -> trio.MemoryReceiveChannel[ModemEvent]: ...
