"""Sans-IO AT framer: modem bytes in, responses, the `> ` prompt and unsolicited codes out.

Pure: no trio, no serial, no clock. It knows which command is pending, which is how a `+CMGS:`
(a response) is told from a `+CMTI:` (an unsolicited result code). Implements the response
format of ITU-T V.250 section 5.7, 3GPP TS 27.007 section 4 and TS 27.005 sections 3.4 and 3.5.1.
"""

from __future__ import annotations

import enum
import re
from collections import deque
from typing import Final, Literal

import msgspec

from drivers.at.commands import (
    ICCID_PREFIXES,
    cme_code_from_text,
    cms_code_from_text,
    command_name,
    decimal,
)


class FinalKind(enum.Enum):
    OK = "OK"
    ERROR = "ERROR"
    CMS_ERROR = "+CMS ERROR"
    CME_ERROR = "+CME ERROR"


class FinalResult(msgspec.Struct, frozen=True, kw_only=True):
    """The line that ends a command: OK, ERROR, `+CMS ERROR: <err>` or `+CME ERROR: <err>`.

    `code` is the numeric <err>, also when the modem answered verbosely (AT+CMEE=2) with a text
    from the tables in `drivers.at.commands`; None for OK, ERROR and texts not in a table.
    """

    kind: FinalKind
    code: int | None = None
    text: str = ""

    @property
    def ok(self) -> bool:
        return self.kind is FinalKind.OK


class Response(msgspec.Struct, frozen=True):
    """The information lines of the pending command and its final result code."""

    lines: tuple[str, ...]
    final: FinalResult


class Prompt(msgspec.Struct, frozen=True):
    """The `> ` after AT+CMGS: the modem waits for the PDU (TS 27.005 section 3.5.1)."""


class Urc(msgspec.Struct, frozen=True):
    """An unsolicited result code; `pdu` is the second line of +CMT, +CDS and +CBM."""

    name: str
    line: str
    pdu: str | None = None


class Garbage(msgspec.Struct, frozen=True):
    """A line that is neither a response nor a known unsolicited code, with nothing pending or
    with a command pending whose answer it cannot be part of (an unprefixed line while one
    that answers only `+NAME:` lines is); or line noise (control or 0xFF octets no AT text has)
    or a line longer than `max_line` (its first `max_line` bytes) at any time, never taken as
    an answer.
    """

    line: str


AtEvent = Response | Prompt | Urc | Garbage


class _NeedData(enum.Enum):
    NEED_DATA = "NEED_DATA"


NEED_DATA: Final = _NeedData.NEED_DATA


# Final result codes without a parameter (V.250 section 5.7.1, verbose form). The dial results
# end a command too, so a modem that answers one is never left with a command pending.
_FINAL_WORDS: Final[dict[str, FinalKind]] = {
    "OK": FinalKind.OK,
    "ERROR": FinalKind.ERROR,
    "BUSY": FinalKind.ERROR,
    "NO ANSWER": FinalKind.ERROR,
    "NO DIALTONE": FinalKind.ERROR,
    "COMMAND NOT SUPPORT": FinalKind.ERROR,  # some Huawei firmware
    "TOO MANY PARAMETERS": FinalKind.ERROR,  # some Huawei firmware
}

# NO CARRIER ends a call command (V.250 6.3.1 D, 6.3.5 A, 6.3.7 O) and no other: a modem also
# writes it unsolicited when a call ends, as when a caller gives up on a call to the SIM that
# nobody answers (SIM800, Quectel). Taken then for the answer of AT+CMGS, a part the network
# took would pass for refused and be sent twice.
_CALL_ENDED: Final = "NO CARRIER"

_FINAL_PREFIXES: Final[dict[str, FinalKind]] = {
    "+CMS ERROR:": FinalKind.CMS_ERROR,
    "+CME ERROR:": FinalKind.CME_ERROR,
}

# Unsolicited result codes that carry a PDU on the line after them (TS 27.005 section 3.4.1).
_URC_WITH_PDU: Final = frozenset({"+CMT", "+CDS", "+CBM"})

# Unsolicited codes a modem writes only when it has just (re)started (SIM800, SIM7600 and
# Quectel "RDY", Cinterion "^SYSSTART"): every setting of its initialisation (echo, error
# format, PDU mode, +CNMI indications, an entered PIN) is back at its power-on default.
RESTART_URCS: Final = frozenset({"RDY", "^SYSSTART"})
# Unsolicited result codes split from a pending command's answer unless that command is the
# one named (AT+CREG? answers +CREG:, which outside it is the registration URC): the names the
# driver knows, and the only ones it counts by name.
URC_NAMES: Final = RESTART_URCS | frozenset(
    {
        "+CMTI",  # TS 27.005 3.4.1: new SMS stored
        "+CMT",
        "+CDSI",  # status report stored
        "+CDS",
        "+CBM",
        "+CBMI",
        "RING",  # V.250 / TS 27.007 6.11
        _CALL_ENDED,
        "+CRING",
        "+CLIP",
        "+CCWA",
        "+CREG",  # TS 27.007 7.2
        "+CGREG",
        "+CEREG",
        "+CUSD",
        "+CIEV",
        "+CPIN",  # SIM800 and others announce SIM readiness unsolicited
        "+CFUN",
        "+PACSP",
        "^RSSI",  # Huawei
        "^BOOT",
        "^MODE",
        "^SRVST",
        "^SIMST",
        "^HCSQ",
        "^DSFLOWRPT",
        "+QIND",  # Quectel
        "CALL READY",
        "SMS READY",
        "SMS DONE",  # SIM7600 and other SIMCom LTE modules after boot
        "PB DONE",
        "NORMAL POWER DOWN",
        "POWERED DOWN",  # Quectel, after AT+QPOWD or a power key: the port goes quiet
        "UNDER-VOLTAGE WARNNING",  # SIM800 spelling
        "UNDER-VOLTAGE POWER DOWN",
        "OVER-VOLTAGE WARNNING",
        "OVER-VOLTAGE POWER DOWN",
    }
)

# Commands whose answer may carry another command's prefix: the ICCID reads of
# `commands.ICCID_COMMANDS`, answered `+CCID:`, `+ICCID:`, `^ICCID:` or `+QCCID:` by vendor.
_ICCID_PREFIXES: Final = frozenset(ICCID_PREFIXES)
_ANSWER_PREFIXES: Final[dict[str, frozenset[str]]] = {
    name: _ICCID_PREFIXES for name in _ICCID_PREFIXES
}

# Commands whose information text may be unprefixed lines: identification (V.250 6.1, TS 27.007
# 5), ICCID reads, an S-register read (the resync's `S7?`), and storage reads, whose PDU (or,
# in text mode, message text) follows its +CMGR:/+CMGL: header. Every other command the driver
# gives answers `+NAME:` lines or nothing (TS 27.007 4.1, TS 27.005 3.5.1): an unprefixed line
# while one of those is pending is no part of its answer (SIM800's DST: 0 after its network
# time), and taken for its text would make a slow answer pass for one whose final is lost.
_BARE_TEXT_ANSWERS: Final = _ICCID_PREFIXES | frozenset(
    {"+CGMI", "+CGMM", "+CGMR", "+CGSN", "+GMI", "+GMM", "+GMR", "+GSN", "+CMGR", "+CMGL"}
)
_S_REGISTER: Final = re.compile(r"S[0-9]+")
_PREFIXED: Final = re.compile(r"([+^$%#*][A-Za-z0-9_]+):")
_HEX_LINE: Final = re.compile(r"(?:[0-9A-Fa-f]{2})+")
_CONTROL_JUNK: Final = str.maketrans("", "", "\x00\x1a\x1b")
# Octets that no AT response text has (V.250 5.7: IA5 text): what is left of them after the
# NUL, Ctrl-Z and ESC some modems emit are stripped is line noise (framing errors, hub resets).
_NOISE_OCTETS: Final = r"\x01-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\xff"
_NOISE: Final = re.compile(f"[{_NOISE_OCTETS}]")
# The prompt starts a line, the only output ending in mid-line (TS 27.005 3.5.1). Octets that
# are no text (stripped junk or noise) before it leave it the prompt; any text makes it a line.
_PROMPT: Final = re.compile(f"([\\x00{_NOISE_OCTETS}]*)> ?".encode("latin-1"))


class _State(enum.Enum):
    IDLE = "idle"  # nothing pending: every line is a URC or garbage
    COMMAND = "command"  # a command is pending: lines are its answer, URCs aside
    PROMPT = "prompt"  # AT+CMGS is pending and the "> " may come
    PDU_SENT = "pdu-sent"  # past the prompt: the modem echoes the PDU, then +CMGS: and OK


# (state, what the line is) -> next state; a missing pair leaves the state as it is. The
# handlers below emit the event; this table alone decides where the cycle goes.
_TRANSITIONS: Final[dict[tuple[_State, str], _State]] = {
    (_State.COMMAND, "final"): _State.IDLE,
    (_State.PROMPT, "final"): _State.IDLE,
    (_State.PDU_SENT, "final"): _State.IDLE,
    (_State.PROMPT, "prompt"): _State.PDU_SENT,
}


class AtFramer:
    """Splits a modem's byte stream into `AtEvent`s.

    `send_command(command)` gives the bytes of a command line and records that lines from now
    on answer it, as h11's `Connection.send` does (`prompt=True` for AT+CMGS, answered first by
    `> `). `receive_data(b"")` says the stream ended: a last line without its terminator is
    taken as complete. The buffer holds at most `max_line` bytes once `next_event` wants data:
    a line longer than that is garbage, and the rest of it is dropped as it comes.
    """

    def __init__(self, max_line: int = 4096) -> None:
        if max_line < 16:
            raise ValueError("max_line must be at least 16")
        self.max_line = max_line
        self._buffer = bytearray()
        self._events: deque[AtEvent] = deque()
        self._state = _State.IDLE
        self._command = ""
        self._name = ""
        self._lines: list[str] = []
        self._urc_waiting_pdu: tuple[str, str] | None = None
        self._ended = False
        self._dropping = False  # the rest of a line longer than max_line is still to come
        self._echoes = 0

    @property
    def pending(self) -> str | None:
        """The command whose answer is awaited, or None."""
        return None if self._state is _State.IDLE else self._command

    @property
    def partial(self) -> tuple[str, ...]:
        """The information lines of the pending command so far (its final result not yet
        seen): after a lost final result code, what did get through."""
        return () if self._state is _State.IDLE else tuple(self._lines)

    @property
    def echoes(self) -> int:
        """How many command lines came back as their own echo (V.250 6.2.4, ATE1) so far: a
        count taken before a command and after its answer says whether that one was echoed."""
        return self._echoes

    def send_command(self, command: str, *, prompt: bool = False) -> bytes:
        """The bytes to write for `command`; lines read from now on answer it."""
        line = command.strip()
        encoded = (line + "\r").encode("ascii")
        self.expect(line)
        if prompt:
            self.expect_prompt()
        return encoded

    def expect(self, command: str) -> None:
        """A command line is about to be written; lines from now on answer it."""
        self._state = _State.COMMAND
        self._command = command.strip()
        self._name = command_name(command)
        self._lines = []

    def expect_prompt(self) -> None:
        """The pending command (AT+CMGS) is answered first by `> `, then by its response."""
        if self._state is _State.IDLE:
            raise RuntimeError("expect_prompt() needs a pending command")
        self._state = _State.PROMPT

    def receive_data(self, data: bytes | bytearray) -> None:
        if not data:
            self._ended = True
            return
        self._ended = False
        self._buffer += data

    def next_event(self) -> AtEvent | Literal[_NeedData.NEED_DATA]:
        while not self._events:
            read = self._next_line()
            if read is None:
                return NEED_DATA
            self._classify(*read)
        return self._events.popleft()

    # ---- line splitting --------------------------------------------------------------------

    def _next_line(self) -> tuple[str, bool] | None:
        """The next line, and whether it is whole (not longer than `max_line`); None when
        more data is needed."""
        buffer = self._buffer
        if self._dropping:
            end = _find_terminator(buffer)
            if end < 0:
                buffer.clear()
                return None
            del buffer[:end]
            self._dropping = False
        start = 0
        while start < len(buffer) and buffer[start] in b"\r\n":
            start += 1
        if start:
            del buffer[:start]
        if self._state is _State.PROMPT and (prompt := _PROMPT.match(buffer)):
            noise = prompt.group(1).decode("latin-1").translate(_CONTROL_JUNK)
            del buffer[: prompt.end()]
            if noise:
                self._events.append(Garbage(noise))
            self._state = _TRANSITIONS[(self._state, "prompt")]
            self._events.append(Prompt())
            return "", True
        end = _find_terminator(buffer)
        if end < 0:
            if len(buffer) > self.max_line:
                # No answer is that long: the line is garbage, its rest dropped as it comes.
                self._dropping = True
            elif not (self._ended and buffer):
                return None
            end = len(buffer)
        raw = bytes(buffer[: min(end, self.max_line)])
        del buffer[: end + 1]
        # Latin-1 maps every byte to one character, so garbage stays visible and never raises.
        return raw.decode("latin-1").translate(_CONTROL_JUNK).strip(), end <= self.max_line

    # ---- classification --------------------------------------------------------------------

    def _classify(self, line: str, whole: bool) -> None:
        if not line:
            return
        if self._urc_waiting_pdu is not None:
            # The PDU is the line right after its header (TS 27.005 3.4.1): this line decides.
            # Any other, noise too, means it never came whole; the header goes alone, and this
            # line is read on its own. Kept waiting, the header would take the next hex line
            # for its PDU, which may be an answer the driver asked for since (an ICCID).
            name, header = self._urc_waiting_pdu
            self._urc_waiting_pdu = None
            if whole and _HEX_LINE.fullmatch(line):
                self._events.append(Urc(name, header, line))
                return
            self._events.append(Urc(name, header, None))
        if not whole or _NOISE.search(line):
            self._events.append(Garbage(line))
            return
        final = _final_result(line, call=self._state is not _State.IDLE and _is_call(self._name))
        if final is not None:
            self._on_final(line, final)
            return
        name = _line_name(line)
        if self._state is not _State.IDLE and self._answers(name):
            self._lines.append(line)
        elif name in URC_NAMES or _PREFIXED.match(line):
            # A `+NAME:` line that is not the pending command's answer is unsolicited, also
            # when no table here names it (V.250 5.7.2, TS 27.007 4.1): modems add their own,
            # and taken for answer text it would pass for an answer whose final result is lost.
            if name in _URC_WITH_PDU:
                self._urc_waiting_pdu = (name, line)
            else:
                self._events.append(Urc(name, line, None))
        elif self._state is _State.IDLE:
            self._events.append(Garbage(line))
        elif line.upper() == self._command.upper():
            self._echoes += 1
        elif self._is_pdu_echo(line):
            return
        elif self._takes_bare_text():
            self._lines.append(line)
        else:
            self._events.append(Garbage(line))

    def _takes_bare_text(self) -> bool:
        """Whether the pending command's answer may hold lines without a `+NAME:` prefix."""
        name = self._name
        return name in _BARE_TEXT_ANSWERS or _S_REGISTER.fullmatch(name) is not None

    def _answers(self, name: str) -> bool:
        """Whether a line prefixed `name` answers the pending command."""
        return name == self._name or name in _ANSWER_PREFIXES.get(self._name, ())

    def _is_pdu_echo(self, line: str) -> bool:
        # With echo on, the PDU typed after "> " comes back before +CMGS:.
        return self._state is _State.PDU_SENT and _HEX_LINE.fullmatch(line) is not None

    def _on_final(self, line: str, final: FinalResult) -> None:
        next_state = _TRANSITIONS.get((self._state, "final"))
        if next_state is None:
            # A final result with nothing pending: a late answer to a command given up on.
            self._events.append(Garbage(line))
            return
        self._events.append(Response(tuple(self._lines), final))
        self._lines = []
        self._state = next_state


def _find_terminator(buffer: bytearray) -> int:
    cr = buffer.find(b"\r")
    lf = buffer.find(b"\n")
    if cr < 0:
        return lf
    if lf < 0:
        return cr
    return min(cr, lf)


def _line_name(line: str) -> str:
    match = _PREFIXED.match(line)
    if match:
        return match.group(1).upper()
    return line.upper()


def _is_call(name: str) -> bool:
    """Whether a command of this name (`commands.command_name`) is a call command: ATA, or ATD
    and ATO with what follows them (`ATD41000000;` is named "D41000000", `ATO0` "O0")."""
    return name == "A" or name[:1] in ("D", "O")


def _final_result(line: str, *, call: bool) -> FinalResult | None:
    """The final result code `line` is, if it is one; `call`: a call command is pending."""
    upper = line.upper()
    if upper == _CALL_ENDED:
        return FinalResult(kind=FinalKind.ERROR, text=line) if call else None
    kind = _FINAL_WORDS.get(upper)
    if kind is not None:
        return FinalResult(kind=kind, text=line)
    for prefix, kind in _FINAL_PREFIXES.items():
        if upper.startswith(prefix):
            value = line[len(prefix) :].strip()
            code = decimal(value)
            if code is not None:
                return FinalResult(kind=kind, code=code, text=value)
            lookup = cms_code_from_text if kind is FinalKind.CMS_ERROR else cme_code_from_text
            return FinalResult(kind=kind, code=lookup(value), text=value)
    return None
