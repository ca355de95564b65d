"""The recovery ladder of one AT command, as a decision: what to do after an answer or a silence.

Pure: no trio, no I/O; time is the `now` argument. A lost final result code costs a resync (a
command whose answer carries a fresh nonce, `commands.resync`) and a retry for a command that is
safe to repeat (queries, settings); a command that is not (AT+CMGD, AT+CNMA, AT+CPIN=<pin>) is
resynchronised and reported unanswered, for its caller to establish what happened. Only when
the ladder runs out does the driver escalate (re-initialise or reopen). "Not ready" answers
(+CMS ERROR: 314, +CME ERROR: 14, as after boot before "SMS Ready") are asked again after a
pause. TS 27.005 section 3.2.5, TS 27.007 9.2.
"""

from __future__ import annotations

import enum
import math
from typing import Final

import msgspec

from drivers.at.commands import CmeError, CmsError, decimal
from drivers.at.framer import RESTART_URCS, FinalKind, FinalResult


class Step(enum.Enum):
    ACCEPT = "accept"  # the answer stands
    ASK_AGAIN = "ask-again"  # not ready yet: ask again at `at`
    RESYNC_AND_REPEAT = "resync-and-repeat"  # lost answer: resync, then the same command again
    RESYNC_AND_REPORT = "resync-and-report"  # lost answer, not repeatable: resync, then say so
    REINITIALISE = "reinitialise"  # the ladder ran out while serving: initialise in place
    REOPEN = "reopen"  # the ladder ran out while initialising: give the port up


class Decision(msgspec.Struct, frozen=True):
    step: Step
    at: float = 0.0  # for ASK_AGAIN: when


# Answers that mean "not yet", not "no": the SMS layer or the SIM is still starting.
_NOT_READY: Final = frozenset(
    {
        (FinalKind.CMS_ERROR, CmsError.SIM_BUSY),
        (FinalKind.CME_ERROR, CmeError.SIM_BUSY),
    }
)


def is_not_ready(final: FinalResult) -> bool:
    return (final.kind, final.code) in _NOT_READY


class CommandLadder:
    """One command's attempts: `timed_out()` after a silence, `answered()` after a final result.

    `retries` lost answers are resynchronised and repeated; the next escalates: a modem that
    was serving is re-initialised on the open port (it may have restarted), one that was
    still initialising, where that would only start over, has its port reopened. A "not ready"
    answer is asked again every `poll_interval` until `not_ready_for` seconds have passed since
    the first one; then it is accepted as it is.
    """

    def __init__(
        self,
        *,
        repeatable: bool,
        retries: int,
        poll_interval: float,
        not_ready_for: float,
    ) -> None:
        self.repeatable = repeatable
        self.retries = max(0, retries)
        self.poll_interval = poll_interval
        self.not_ready_for = not_ready_for
        self.silences = 0
        self._not_ready_since: float | None = None

    def timed_out(self, *, serving: bool) -> Decision:
        self.silences += 1
        if not self.repeatable:
            return Decision(Step.RESYNC_AND_REPORT)
        if self.silences <= self.retries:
            return Decision(Step.RESYNC_AND_REPEAT)
        return Decision(Step.REINITIALISE if serving else Step.REOPEN)

    def answered(self, final: FinalResult, now: float) -> Decision:
        if not (self.repeatable and is_not_ready(final)):
            return Decision(Step.ACCEPT)
        if self._not_ready_since is None:
            self._not_ready_since = now
        if now + self.poll_interval > self._not_ready_since + self.not_ready_for:
            return Decision(Step.ACCEPT)
        return Decision(Step.ASK_AGAIN, now + self.poll_interval)


# Commands whose second execution can do harm when the first one's answer was lost: a delete
# may hit a message stored since at the same index, a PIN costs one of three attempts, an
# acknowledgement may acknowledge the next message.
_NOT_REPEATABLE_PREFIXES: Final = ("AT+CMGD=", "AT+CNMA", "AT+CPIN=", "AT+CMGS=", "AT+CMGW=")


def is_repeatable(command: str) -> bool:
    return not command.upper().startswith(_NOT_REPEATABLE_PREFIXES)


def resync_answered(lines: tuple[str, ...], final: FinalResult, nonce: int) -> bool:
    """Whether the answer to `commands.resync(nonce)` puts the line in step: OK with the nonce
    read back, or an error (a modem without S7 answered this command: a late error of an
    earlier one is a risk taken). An OK without the nonce is a late OK of an earlier command."""
    if not final.ok:
        return True
    return any(decimal(line) == nonce for line in lines)


def means_restart(urc_name: str) -> bool:
    """Whether an unsolicited code says the modem restarted and must be initialised again."""
    return urc_name in RESTART_URCS


def escapes(attempts: int, *, first: bool) -> list[bool]:
    """The tries of a synchronisation (bare AT) or a resync, at least one, each saying whether
    ESC goes before it: before every try after the first, since the modem may sit in a PDU
    entry that a lost answer's command opened, and before the first as well when `first`
    (a command was just given up on)."""
    return [attempt > 0 or first for attempt in range(max(1, attempts))]


class ResyncNonces:
    """The nonce of each resync, 1 to 255 in turn (S7 holds a byte; 0, what a reset register
    may read, is never used), so an answer to an earlier resync cannot pass for this one."""

    def __init__(self) -> None:
        self.last = 0

    def next(self) -> int:
        self.last = self.last % 255 + 1
        return self.last


class AnswerWait:
    """How long the pending command's final result is awaited: until `within` seconds after
    it was written, or until its information text has come and then nothing for `grace`
    seconds (a modem writes the final result code right after the text, so it was lost)."""

    def __init__(self, now: float, *, within: float, grace: float) -> None:
        self.deadline = now + within
        self.grace = grace
        self._lines = 0
        self._changed_at = now

    def look(self, lines: int, now: float) -> float | None:
        """`lines` lines of text have come by `now`: None when the answer counts as lost, else
        when to look again unless text comes first (the shell looks again whenever it does):
        at the deadline while there is none, a grace after it last grew once there is."""
        if lines != self._lines:
            self._lines, self._changed_at = lines, now
        if now >= self.deadline or (self._lines and now >= self._changed_at + self.grace):
            return None
        if not self._lines:
            return self.deadline
        return min(self.deadline, self._changed_at + self.grace)


class GarbageRun:
    """Unrecognised lines in a row: noise now and then costs nothing, more than `limit` in a
    row mean the link is garbled (wrong baud rate, a dying cable) and the port is reopened."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.length = 0

    def garbage(self) -> bool:
        """Count one; True when the run is past the limit."""
        self.length += 1
        return self.length > self.limit

    def understood(self) -> None:
        """A line that was an answer or an unsolicited code ends the run."""
        self.length = 0


class Rest(msgspec.Struct, frozen=True):
    """After a connection ended: wait `seconds`, then open the port again; `quarantine` when
    that many recoveries in a row failed (`failures` of them) and the modem rests;
    `needs_person` (forever) when the SIM refused in a way no retry can mend."""

    seconds: float
    quarantine: bool = False
    failures: int = 0
    needs_person: bool = False


class ReopenLadder:
    """The top of the ladder, when the port itself is given up: reopen after a pause doubling
    from `initial` to `maximum` per connection that never got ready; after `quarantine_after`
    of those in a row (0: never) rest `quarantine_seconds` and start over. A SIM locked for good
    (a wrong PIN, a PUK) is never reopened: that would repeat the refusal, and entering the PIN
    again could block the SIM."""

    def __init__(
        self, *, initial: float, maximum: float, quarantine_after: int, quarantine_seconds: float
    ) -> None:
        self.initial = initial
        self.maximum = maximum
        self.quarantine_after = quarantine_after
        self.quarantine_seconds = quarantine_seconds
        self._backoff = initial
        self._failures = 0

    def ended(self, *, became_ready: bool, sim_locked: bool = False) -> Rest:
        if sim_locked:
            return Rest(math.inf, failures=self._failures, needs_person=True)
        if became_ready:
            self._backoff = self.initial
            self._failures = 0
        else:
            self._failures += 1
        failures = self._failures
        if self.quarantine_after > 0 and failures >= self.quarantine_after:
            self._failures = 0
            self._backoff = self.initial
            return Rest(self.quarantine_seconds, quarantine=True, failures=failures)
        rest = Rest(self._backoff, failures=failures)
        self._backoff = min(self._backoff * 2, self.maximum)
        return rest
