"""The AT driver's smaller decisions, each a pure object or function the trio shell consults.

Pure: no trio, no I/O, no clock. The SIM unlock policy (TS 27.007 section 8.3: the PIN entered
at most once, PUK never guessed), the choice of storage and new-message indications (TS 27.005
sections 3.2.2 and 3.4.1), the streak of rejected sends that points at the modem rather than the
message (section 3.2.5), the event buffer's rule that only a health change ever gives way to
a newer event, how the network's state reads in the modem's health (TS 27.007 sections 7.2
and 8.5), and when a periodic chore (a storage sweep, a health poll) is due, time being the
`now` argument.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence
from typing import Final

import msgspec

from drivers.at.commands import CmeError, Cnmi, Registration, cpin_enter, parse_cnmi_setting
from drivers.at.framer import FinalKind, FinalResult
from drivers.events import HealthChanged, ModemEvent

# +CPIN answers that let SMS commands work; PIN2 guards no SMS command.
SIM_READY: Final = frozenset({"READY", "SIM PIN2", "SIM PUK2"})

# +CME ERROR answers to AT+CPIN? that stand for a +CPIN code (TS 27.007 section 9.2.1).
_CME_SIM_CODES: Final[dict[int, str]] = {
    CmeError.SIM_NOT_INSERTED: "SIM NOT INSERTED",
    CmeError.SIM_PIN_REQUIRED: "SIM PIN",
    CmeError.SIM_PUK_REQUIRED: "SIM PUK",
    CmeError.SIM_FAILURE: "SIM FAILURE",
    CmeError.SIM_BUSY: "SIM BUSY",
    CmeError.SIM_WRONG: "SIM WRONG",
    CmeError.PH_SIM_PIN_REQUIRED: "PH-SIM PIN",
}


def sim_code(final: FinalResult) -> str:
    """The +CPIN code an error answer to AT+CPIN? stands for, else the error's own text."""
    if final.kind is FinalKind.CME_ERROR and final.code is not None:
        known = _CME_SIM_CODES.get(final.code)
        if known is not None:
            return known
    return f"{final.kind.value} {final.text}".strip()


class SimStep(enum.Enum):
    READY = "ready"  # SMS commands may follow
    ENTER_PIN = "enter-pin"  # write `command` (AT+CPIN="<pin>"), then ask AT+CPIN? again
    WAIT = "wait"  # busy or initialising: ask again after a pause
    LOCKED = "locked"  # needs a person; `reason` says why. Retrying cannot help.


class SimDecision(msgspec.Struct, frozen=True):
    step: SimStep
    command: str = ""
    reason: str = ""


class SimUnlock:
    """What to do about each AT+CPIN? answer: the PIN is entered at most once, a wrong one is
    never retried (three wrong PINs block the SIM), and a PUK is never guessed."""

    def __init__(self, pin: str | None) -> None:
        self.pin = pin
        self.pin_entered = False

    def next(self, code: str) -> SimDecision:
        if code in SIM_READY:
            return SimDecision(SimStep.READY)
        if code == "SIM PIN" and not self.pin_entered:
            if not self.pin:
                return _locked("the SIM asks for its PIN and none is configured")
            try:
                command = cpin_enter(self.pin)
            except ValueError as exc:
                return _locked(f"the configured PIN is unusable: {exc}")
            self.pin_entered = True
            return SimDecision(SimStep.ENTER_PIN, command=command)
        if code == "SIM PIN":
            return _locked("the SIM still asks for its PIN after it was entered")
        if code.startswith(("SIM PUK", "PH-")):
            return _locked(f"the SIM wants {code}; enter it by hand, it is never guessed")
        # SIM busy, not inserted or not yet initialised: may change without our help.
        return SimDecision(SimStep.WAIT)

    def pin_answered(self, final: FinalResult) -> SimDecision | None:
        """The answer to AT+CPIN="<pin>": None to ask AT+CPIN? again, or LOCKED."""
        if final.ok:
            return None
        return _locked(f"the SIM rejected the PIN ({final.text}); not retried")


def _locked(reason: str) -> SimDecision:
    return SimDecision(SimStep.LOCKED, reason=reason)


def storage_in_use(accepted: str | None, reported: str, preferences: Sequence[str]) -> str:
    """Where +CMTI will point: the preferred storage the modem accepted (AT+CPMS), else the one
    it reports using (AT+CPMS?), else the first preference."""
    return accepted or reported or (preferences[0] if preferences else "")


class IndicationChoice:
    """AT+CNMI settings in order of preference, stored delivery (+CMTI, +CDSI) first: the first
    the modem accepts is used. With a direct one (+CMT, +CDS) AT+CSMS=1 is asked for, so that a
    message waits for our AT+CNMA and one the gateway has no room for goes back to the network.
    """

    def __init__(self, settings: Sequence[str], *, csms_for_direct: bool) -> None:
        self.candidates: list[Cnmi] = [parse_cnmi_setting(text) for text in settings]
        self.csms_for_direct = csms_for_direct

    def wants_csms(self, chosen: Cnmi | None) -> bool:
        return chosen is not None and chosen.direct and self.csms_for_direct


class RejectionStreak:
    """Transient rejections of different messages in a row point at the modem itself: one
    failing message is the message, `limit` of them are the modem. 0 never says so."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.length = 0
        self._last: bytes | None = None

    def rejected(self, tpdu: bytes, *, permanent: bool) -> bool:
        """Count a rejection of `tpdu`; True when the streak is complete (re-initialise now,
        and the count starts over). A permanent one, or the same message again, counts not."""
        if permanent or tpdu == self._last:
            return False
        self._last = tpdu
        self.length += 1
        if self.limit <= 0 or self.length < self.limit:
            return False
        self.sent()
        return True

    def sent(self) -> None:
        self.length = 0
        self._last = None


def make_room(queued: Sequence[ModemEvent], event: ModemEvent) -> list[ModemEvent] | None:
    """The buffer `queued` is full: drop its oldest HealthChanged and put `event` last; None
    when it holds none. Inbound events are never dropped to make room, nor a RegistrationChanged:
    the gateway's sweeps wait from it, and nothing may tell it again while it holds (a modem
    with no health polls)."""
    oldest = next((i for i, old in enumerate(queued) if isinstance(old, HealthChanged)), None)
    if oldest is None:
        return None
    return [*queued[:oldest], *queued[oldest + 1 :], event]


def best_registration(
    circuit: Registration | None, eps: Registration | None
) -> Registration | None:
    """The better of circuit-switched (+CREG) and EPS (+CEREG) registration: registered beats
    not, then home beats roaming, then circuit-switched wins a tie. An LTE stick may be
    registered on EPS only, and SMS goes over either. None while neither is known."""
    known = [r for r in (circuit, eps) if r is not None]
    if not known:
        return None
    return max(known, key=lambda r: (r.stat.registered, r.stat == r.stat.HOME))


def registration_name(circuit: Registration | None, eps: Registration | None) -> str | None:
    """The better registration (`best_registration`) as health shows it ("home", "roaming",
    "searching", ...); None while neither is known."""
    best = best_registration(circuit, eps)
    return None if best is None else best.stat.name.lower().replace("_", " ")


def network_detail(signal_dbm: int | None, registration: str) -> str:
    """The health detail of a serving modem after a poll: its signal and registration."""
    level = "signal unknown" if signal_dbm is None else f"signal {signal_dbm} dBm"
    return f"{level}, {registration or 'registration unknown'}"


class Periodic:
    """A chore done every `interval` seconds after the last time it was done; with an interval
    of 0 (or less) only when asked. `at_once`: due at `now` first (a sweep on a new connection),
    else an interval from `now` (a health poll)."""

    def __init__(self, interval: float, now: float, *, at_once: bool) -> None:
        self.interval = interval
        self.next_at = now
        if not at_once:
            self.done(now)

    def due(self, now: float) -> bool:
        return now >= self.next_at

    def done(self, now: float) -> None:
        self.next_at = now + self.interval if self.interval > 0 else math.inf
