"""The simulated modem's AT engine: terminal bytes in, output bytes out, each with its due time.

Pure (sans-IO): no trio, no files, no clock; time is the `now` argument, so a slow +CMGS is a
reply due later and a status report a timer the shell fires with `advance`, never a sleep.
ITU-T V.250 section 5 (command line, echo, S3/S4, result codes), 3GPP TS 27.007 (identity, SIM,
registration) and TS 27.005 (PDU mode: sending, storage, +CNMI indications, +CNMA).
"""

from __future__ import annotations

import datetime as dt
import enum
import heapq
import itertools
import random
from collections import deque
from collections.abc import Callable

import msgspec

from drivers.gsm import (
    EncodedPart,
    GsmError,
    build_deliver,
    encode_gsm,
    join_sca,
    message_class,
    split_sca,
)
from drivers.simulator.codes import CME_TEXT, CMS_TEXT, CmeError, CmsError
from drivers.simulator.commandline import (
    Command,
    CommandSyntaxError,
    Form,
    find_prefix,
    integer,
    on_off,
    parameters,
    quoted_or_bare,
    split_commands,
)
from drivers.simulator.options import SimulatorOptions
from drivers.simulator.profiles import QuirkProfile, profile_named
from drivers.simulator.sent import SentSms, decode_sent_sms
from drivers.simulator.storage import MessageStatus, MessageStorage, StoredSms

MANUFACTURER = "edgegw"
MODEL = "SIM-GSM1"
REVISION = "SIMGSM1R01"

CTRL_Z = 0x1A
ESC = 0x1B

# V.250 asks for at least 40 characters; real modems take a few hundred (SIM800: 556).
COMMAND_LINE_LIMIT = 556
# Longest TPDU (TS 23.040: 164 octets with a 160-octet user data) plus the longest SMSC address.
MAX_TPDU_OCTETS = 164
MAX_PDU_HEX = 2 * (MAX_TPDU_OCTETS + 12)

# Message storages for +CPMS (TS 27.005 section 3.2.2): SIM (size from the options) and phone.
STORAGE_NAMES = ("SM", "ME")
ME_CAPACITY = 100
# Unsolicited result codes a TA keeps while +CNMI <mode> is 0; past this the oldest go, as
# TS 27.005 section 3.4.1 allows.
TA_BUFFER_LIMIT = 16
# When the storage_full profile's old messages were received.
OLD_MESSAGES_TIME = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)
OLD_MESSAGES_SENDER = "+4791000000"
# Location area and cell of the simulated cell for +CREG=2 (TS 27.007 section 7.2).
LOCATION_AREA = "00A1"
CELL_ID = "1F2E"
PIN_ATTEMPTS = 3
# Seconds a URC waits for a response to land in (SimulatorOptions.urc_in_response).
URC_RESPONSE_WAIT = 1.0

# V.250 section 6.2: the S-registers we keep and their factory values.
S_REGISTER_DEFAULTS = {0: 0, 3: 13, 4: 10, 5: 8, 6: 2, 7: 60, 8: 2, 10: 15}


class Reply(msgspec.Struct, frozen=True):
    """Bytes the modem writes at `due`; `sent` reaches the network at `due`, before the bytes."""

    due: float
    data: bytes
    sent: SentSms | None = None


class SimState(enum.StrEnum):
    """+CPIN answers (TS 27.007 section 8.3)."""

    READY = "READY"
    SIM_PIN = "SIM PIN"
    SIM_PUK = "SIM PUK"


class _Fault(Exception):
    """A command failed; subclasses carry the wire's answer."""


class _MeFault(_Fault):
    def __init__(self, code: CmeError) -> None:
        super().__init__(code)
        self.code = code


class _SmsFault(_Fault):
    def __init__(self, code: CmsError) -> None:
        super().__init__(code)
        self.code = code


class _PduInput:
    """The text after the `> ` prompt of AT+CMGS or AT+CMGW, up to Ctrl-Z or ESC."""

    def __init__(
        self,
        length: int,
        write_status: MessageStatus | None = None,
        *,
        text_to: str | None = None,
    ) -> None:
        self.length = length
        # None: send it (+CMGS); a status: store it in <mem2> (+CMGW).
        self.write_status = write_status
        # Text mode (TS 27.005 section 4.3): the destination, and what is typed is the text.
        self.text_to = text_to
        self.hex = bytearray()
        self.overflow = False


class Incoming(msgspec.Struct, frozen=True):
    """A TPDU the network hands to the modem: an SMS-DELIVER or an SMS-STATUS-REPORT."""

    tpdu: bytes
    is_report: bool


class _Arrival(msgspec.Struct, frozen=True):
    incoming: Incoming


class _ReportDue(msgspec.Struct, frozen=True):
    """The network hands over a status report, built only now: most are due long after the
    send (a day, where the network is slow to deliver), and a modem restarted keeps them."""

    build: Callable[[], bytes]


class _AckTimeout(msgspec.Struct, frozen=True):
    token: int


class _Wake(msgspec.Struct, frozen=True):
    """Look again: held URCs may be due, the modem may have registered."""


class _Booted(msgspec.Struct, frozen=True):
    """The deaf window after power-on ends: the modem announces itself."""


class _SmsReady(msgspec.Struct, frozen=True):
    """The SMS part of the firmware is up: SMS commands work from now on."""


class _Periodic(msgspec.Struct, frozen=True):
    """Time for the next unsolicited signal report."""


class _SilentRestart(msgspec.Struct, frozen=True):
    """A watchdog or a brown-out: the modem starts over without announcing it."""


_Timer = (
    _Arrival | _ReportDue | _AckTimeout | _Wake | _Booted | _SmsReady | _Periodic | _SilentRestart
)


Handler = Callable[["ModemEngine", str], list[str]]


class ModemEngine:
    """One modem's whole state: settings, SIM, registration, message reference counter, message
    storage, and what the network still has to hand it (timers for `advance`).

    Where TS 27.005 leaves a choice, this modem does what SIM800 and Quectel modules do:
    - <mem3> full: a new SMS or report is refused towards the network (memory capacity
      exceeded) without a word to the TE; the network retries once +CMGD frees a slot.
    - +CMT/+CDS under +CSMS=1 without +CNMA within `ack_timeout`: <mt> and <ds> drop to 0 and
      the retry is stored unannounced (section 3.4.1); +CNMA=2 makes the network retry later.
    - <ds>=0: a status report is stored unannounced rather than lost, so a sweep finds it.
    - Not registered (PIN, SIM busy, radio off, restarting): the network holds what it has.
    - +CMGR of an empty slot answers OK with nothing; outside 1..capacity +CMS ERROR: 321.
    """

    def __init__(self, options: SimulatorOptions) -> None:
        self.options = options
        self.profile: QuirkProfile = profile_named(options.profile)
        pin = options.pin if options.pin is not None else self.profile.pin
        self._pin = pin
        self.sim_state = SimState.READY if pin is None else SimState.SIM_PIN
        self._pin_attempts = PIN_ATTEMPTS
        self._sim_ready_at: float | None = None
        self._started_at: float | None = None
        self._registration_told: int | None = None  # <stat> as last settled (+CREG=1, 2)
        self.sim_busy = options.sim_busy if options.sim_busy is not None else self.profile.sim_busy
        self.send_delay = (
            options.send_delay if options.send_delay is not None else self.profile.send_delay
        )
        self.cms_fail_every = (
            options.cms_fail_every
            if options.cms_fail_every is not None
            else self.profile.cms_fail_every
        )
        self._next_mr = 0
        self._submits = 0
        self._smsc = options.smsc
        self._noise = random.Random(options.seed)
        # The link faults draw from their own generator, so adding one keeps the others' runs.
        self._lossy = random.Random(f"link-{options.seed}")
        self._line = bytearray()
        self._line_overflow = False
        self._pdu: _PduInput | None = None
        self._busy_until = 0.0
        self._now = 0.0
        self._out: list[Reply] = []
        self.storages = {
            "SM": MessageStorage("SM", options.storage_capacity),
            "ME": MessageStorage("ME", ME_CAPACITY, first=0 if options.me_from_zero else 1),
        }
        if self.profile.storage_full:
            _fill_with_old_messages(self.storages["SM"], options.smsc)
        self._timers: list[tuple[float, int, _Timer]] = []
        self._timer_order = itertools.count()
        # The network keeps what the modem cannot take yet: unregistered, or memory full (it
        # retries once the modem frees memory, the SMMA of TS 23.040 section 10.3).
        self._waiting_for_network: deque[Incoming] = deque()
        self._waiting_for_memory: deque[Incoming] = deque()
        # +CMT/+CDS not yet acknowledged with +CNMA, and those queued behind it: TS 27.005
        # section 3.4.1 forbids a second one before the first is acknowledged.
        self._unacked: Incoming | None = None
        self._ack_token = 0
        self._direct_queue: deque[Incoming] = deque()
        # URCs waiting for the end of a prompt or (urc_hold) for a response to land in.
        self._held: list[str] = []
        self._held_since = 0.0
        self._hold_for = 0.0
        self._ta_buffer: deque[str] = deque(maxlen=TA_BUFFER_LIMIT)
        # +CFUN <fun> (TS 27.007 section 8.2): 1 full functionality, 0 and 4 radio off.
        self.cfun = 1
        self._reset_settings()

    def _reset_settings(self) -> None:
        """Factory settings (ATZ, AT&F); the SIM, the network and the MR counter stay."""
        self.echo = True
        self.cmee = 0
        self.cmgf = 1 if self.options.text_mode else 0
        self.creg_mode = 0
        self.cereg_mode = 0
        self.cops_format = 0
        self.cscs = "IRA"
        self.csms_service = 0
        self.cnmi = [0, 0, 0, 0, 0]
        # +CSMP <fo>,<vp>,<pid>,<dcs> (TS 27.005 section 3.3.2): text-mode sending only.
        self.csmp = [17, 167, 0, 0]
        self.cpms = ["SM", "SM", "SM"]
        self.s_registers = dict(S_REGISTER_DEFAULTS)

    # ---- input -------------------------------------------------------------------------------

    def receive_data(self, data: bytes, now: float) -> list[Reply]:
        """Feed bytes from the terminal at time `now`; return what the modem writes, in order."""
        self._clock(now)
        if self._deaf():
            # Still booting: what the terminal types is lost, as on a modem not yet listening.
            return self._settle()
        start = 0
        while start < len(data):
            if self._pdu is not None:
                start = self._pdu_input(self._pdu, data, start)
            else:
                start = self._command_input(data, start)
        return self._settle()

    def receive_sms(self, tpdu: bytes, now: float) -> tuple[list[Reply], int | None]:
        """The network delivers an SMS-DELIVER `tpdu` at `now`: what the modem writes, and the
        index it was stored at (None when delivered directly with +CMT, or not taken yet)."""
        self._clock(now)
        index = self._arrive(Incoming(tpdu, is_report=False))
        return self._settle(), index

    def schedule_status_report(self, build: Callable[[], bytes], due: float) -> None:
        """The network will hand the modem the SMS-STATUS-REPORT `build()` returns at `due`."""
        self._add_timer(due, _ReportDue(build))

    def next_deadline(self) -> float | None:
        """When `advance` has work next: a report arriving, an acknowledgement timing out."""
        return self._timers[0][0] if self._timers else None

    def advance(self, now: float) -> list[Reply]:
        """Run every timer due by `now`; return what the modem writes."""
        self._clock(now)
        while self._timers and self._timers[0][0] <= now:
            _due, _order, timer = heapq.heappop(self._timers)
            if isinstance(timer, _Arrival):
                self._arrive(timer.incoming)
            elif isinstance(timer, _ReportDue):
                self._arrive(Incoming(timer.build(), is_report=True))
            elif isinstance(timer, _AckTimeout):
                self._ack_timed_out(timer.token)
            elif isinstance(timer, _Booted):
                sim = "READY" if self.sim_state is SimState.READY else str(self.sim_state)
                announced = ["RDY", "+CFUN: 1", f"+CPIN: {sim}", "Call Ready"]
                for text in announced if self.options.sms_not_ready else [*announced, "SMS Ready"]:
                    self._hold(text)
            elif isinstance(timer, _SmsReady):
                self._hold("SMS Ready")
            elif isinstance(timer, _Periodic):
                self._hold(f"^RSSI: {self.options.signal}")
                self._add_timer(now + self.options.periodic_urc, _Periodic())
            elif isinstance(timer, _SilentRestart):
                # What was typed so far is lost with the rest of its state.
                self._line.clear()
                self._line_overflow = False
                self._pdu = None
                self._restart(now, announce=False)
        return self._settle()

    def power_cycle(self, now: float) -> None:
        """The modem restarts (unplugged and back): settings, SIM and registration start over;
        storage, the MR counter and what the network holds for it stay."""
        self._line.clear()
        self._line_overflow = False
        self._pdu = None
        self._busy_until = 0.0
        self._out = []
        self._restart(now)
        self._clock(now)

    def _restart(self, now: float, *, announce: bool = True) -> None:
        self._reset_settings()
        self.cfun = 1
        if self.sim_state is SimState.READY and self._pin is not None:
            self.sim_state = SimState.SIM_PIN
        self._sim_ready_at = None
        unacked = [self._unacked] if self._unacked is not None else []
        self._waiting_for_network.extendleft(reversed([*unacked, *self._direct_queue]))
        self._unacked = None
        self._direct_queue.clear()
        self._held.clear()
        self._ta_buffer.clear()
        self._timers = [
            entry for entry in self._timers if isinstance(entry[2], _Arrival | _ReportDue)
        ]
        heapq.heapify(self._timers)
        self._start(now, announce=announce)

    def _clock(self, now: float) -> None:
        self._now = now
        if self._started_at is None:
            self._start(now)
        if self._sim_busy_now() or self._sim_ready_at is not None:
            return
        if self.sim_state is SimState.READY:
            self._sim_ready_at = now
            self._wake_at_registration()

    def _wake_at_registration(self) -> None:
        """What the network held for an unregistered modem goes out once it registers."""
        if self._sim_ready_at is not None and self.options.register_delay:
            self._add_timer(self._sim_ready_at + self.options.register_delay, _Wake())

    def _start(self, now: float, *, announce: bool = True) -> None:
        """Power-on at `now`; `announce`: RDY and SMS Ready come once the modem listens."""
        self._started_at = now
        if self.sim_busy:
            self._add_timer(now + self.sim_busy, _Wake())
        options = self.options
        if options.boot_deaf and announce:
            self._add_timer(now + options.boot_deaf, _Booted())
        if options.sms_not_ready and announce:
            self._add_timer(now + options.boot_deaf + options.sms_not_ready, _SmsReady())
        if options.periodic_urc:
            self._add_timer(now + options.boot_deaf + options.periodic_urc, _Periodic())
        if options.silent_restart:
            self._add_timer(now + options.silent_restart, _SilentRestart())

    def _sim_busy_now(self) -> bool:
        return self._started_at is not None and self._now < self._started_at + self.sim_busy

    def _deaf(self) -> bool:
        started = self._started_at
        return started is not None and self._now < started + self.options.boot_deaf

    def _sms_not_ready(self) -> bool:
        if self._started_at is None:
            return False
        options = self.options
        return self._now < self._started_at + options.boot_deaf + options.sms_not_ready

    def _settle(self) -> list[Reply]:
        """What follows any input: the network retries, held URCs go out; then the output."""
        if self._pdu is None:
            if self._waiting_for_network and self.registration() == 1:
                waiting = list(self._waiting_for_network)
                self._waiting_for_network.clear()
                for incoming in waiting:
                    self._arrive(incoming)
            while self._waiting_for_memory and not self._receive_storage().full:
                self._arrive(self._waiting_for_memory.popleft())
            self._tell_registration()
            self._release_held()
        out, self._out = self._out, []
        if self.options.fragment:
            return [piece for reply in out for piece in _fragments(reply, self._lossy)]
        return out

    def _add_timer(self, due: float, timer: _Timer) -> None:
        heapq.heappush(self._timers, (due, next(self._timer_order), timer))

    @property
    def echo_on(self) -> bool:
        return self.echo or self.profile.echo_locked_on

    def _due(self) -> float:
        # Output keeps its order: nothing overtakes a reply the network is still working on.
        return max(self._now, self._busy_until)

    def _emit(self, data: bytes, due: float | None = None, sent: SentSms | None = None) -> None:
        at = self._due() if due is None else due
        last = self._out[-1] if self._out else None
        if last is not None and last.due == at and last.sent is None and sent is None:
            self._out[-1] = Reply(at, last.data + data)
        else:
            self._out.append(Reply(at, data, sent))

    def _command_input(self, data: bytes, start: int) -> int:
        """Take `data` from `start` up to and including the next S3 or S5 character (one
        octet at a time would cost a Python call each); return where the rest begins."""
        s3, s5 = self.s_registers[3], self.s_registers[5]
        end = _find_first(data, start, s3, s5)
        stop = len(data) if end < 0 else end + 1
        if self.echo_on:
            # The terminator is echoed too, before the line it ends can turn echo off.
            self._emit(data[start:stop])
        self._append_line(data[start : len(data) if end < 0 else end])
        if end >= 0:
            if data[end] == s3:
                line, overflow = bytes(self._line), self._line_overflow
                self._line.clear()
                self._line_overflow = False
                self._command_line(line, overflow)
            elif self._line:
                self._line.pop()
        return stop

    def _append_line(self, chunk: bytes) -> None:
        room = COMMAND_LINE_LIMIT - len(self._line)
        self._line += chunk[:room]
        if len(chunk) > room:
            self._line_overflow = True

    def _pdu_input(self, pdu: _PduInput, data: bytes, start: int) -> int:
        """Take `data` from `start` up to and including the next Ctrl-Z or ESC, which sends
        (or stores) the PDU or abandons it; return where the rest begins."""
        end = _find_first(data, start, CTRL_Z, ESC)
        chunk = data[start : len(data) if end < 0 else end]
        if chunk:
            if self.echo_on:
                self._emit(chunk)
            room = MAX_PDU_HEX - len(pdu.hex)
            pdu.hex += chunk[:room]
            if len(chunk) > room:
                pdu.overflow = True
        if end < 0:
            return len(data)
        self._pdu = None
        if data[end] == ESC:
            self._emit(self._final(b"OK"))
        elif pdu.text_to is not None:
            self._submit_text(pdu, pdu.text_to)
        elif pdu.write_status is None:
            self._submit(pdu)
        else:
            self._write(pdu, pdu.write_status)
        return end + 1

    # ---- command lines (V.250 section 5.2) ---------------------------------------------------

    def _command_line(self, line: bytes, overflow: bool) -> None:
        text = line.decode("latin-1")
        start = find_prefix(text)
        if start < 0:
            # V.250 5.2.1: characters before "AT" are ignored; a line without it is no command.
            return
        if overflow:
            self._emit(self._final(b"ERROR"))
            return
        blocks: list[list[str]] = []
        try:
            for command in split_commands(text[start + 2 :]):
                lines = self._run(command)
                if lines:
                    blocks.append(lines)
                if self._pdu is not None:
                    # TS 27.005 section 3.5.1: the prompt is <CR><LF><greater_than><space>.
                    self._emit(self._information(blocks) + self._s34() + b"> ")
                    return
        except (_Fault, CommandSyntaxError) as fault:
            self._emit(self._information(blocks) + self._final(self._error_code(fault)))
            return
        self._emit(self._information(blocks) + self._final(b"OK"))

    def _run(self, command: Command) -> list[str]:
        handler = HANDLERS.get((command.name, command.form))
        if handler is not None:
            return handler(self, command.args)
        if command.form is Form.TEST and any(name == command.name for name, _ in HANDLERS):
            # TS 27.007 section 4.1: a test command of a known command at least answers OK.
            return []
        raise CommandSyntaxError(command.name)

    # ---- output formatting (V.250 section 5.7) -----------------------------------------------

    def _s34(self) -> bytes:
        return bytes([self.s_registers[3], self.s_registers[4]])

    def _frame(self, text: str) -> bytes:
        return self._s34() + text.encode("latin-1") + self._s34()

    def _information(self, blocks: list[list[str]]) -> bytes:
        """Each command's information text as one block (V.250 section 5.7.1)."""
        urc = self.profile.urc_in_response
        data = b""
        for index, lines in enumerate(blocks):
            data += self._frame("\r\n".join(lines))
            if index == 0 and urc is not None and not _shares_prefix(urc, blocks):
                data += self._frame(urc)
            if index == 0 and self._hold_for and self._pdu is None:
                # A held +CMTI/+CDSI lands here, as if it had arrived while the modem answered.
                data += b"".join(self._frame(text) for text in self._held)
                self._held.clear()
        return data

    def _final(self, code: bytes) -> bytes:
        options = self.options
        data = self._s34() + code + self._s34()
        if options.drop_final and self._lossy.random() < options.drop_final:
            data = b""  # lost on the cable; the information text before it got through
        if self.profile.garbage:
            data += _noise(self._noise)
        if options.noise and self._lossy.random() < options.noise:
            data += _noise(self._lossy)
        return data

    def _error_code(self, fault: Exception) -> bytes:
        if isinstance(fault, _MeFault) and self.cmee:
            detail = str(int(fault.code)) if self.cmee == 1 else CME_TEXT[fault.code]
            return f"+CME ERROR: {detail}".encode()
        if isinstance(fault, _SmsFault) and self.cmee and not self.profile.bare_cms_error:
            detail = str(int(fault.code)) if self.cmee == 1 else CMS_TEXT[fault.code]
            return f"+CMS ERROR: {detail}".encode()
        # TS 27.007 section 9.1: with +CMEE=0 every failure is a plain ERROR.
        return b"ERROR"

    # ---- SIM and network state ---------------------------------------------------------------

    def registration(self) -> int:
        """+CREG <stat> now: 0 no SIM service, 2 searching, 1 registered (home network)."""
        if self.sim_state is not SimState.READY or self._sim_ready_at is None:
            return 0
        if self._sim_busy_now() or self._deaf() or self.cfun != 1:
            return 0
        if self._due() >= self._sim_ready_at + self.options.register_delay:
            return 1
        return 2

    def _tell_registration(self) -> None:
        """A change of <stat> is an unsolicited line in the modes that ask for it (TS 27.007
        sections 7.2 and 10.1.22: +CREG=1 `+CREG: <stat>`, 2 with <lac>,<ci> once
        registered; +CEREG the same), as a real modem tells it between polls."""
        stat = self.registration()
        if stat == self._registration_told:
            return
        self._registration_told = stat
        for name, mode in (("+CREG", self.creg_mode), ("+CEREG", self.cereg_mode)):
            if mode:
                self._hold(_registration_line(name, mode, stat, unsolicited=True))

    def _require_sim_for_me(self) -> None:
        if self._sim_busy_now():
            raise _MeFault(CmeError.SIM_BUSY)
        if self.sim_state is SimState.SIM_PIN:
            raise _MeFault(CmeError.SIM_PIN_REQUIRED)
        if self.sim_state is SimState.SIM_PUK:
            raise _MeFault(CmeError.SIM_PUK_REQUIRED)

    def _require_sim_for_sms(self) -> None:
        self._require_sms_ready()
        if self._sim_busy_now():
            raise _SmsFault(CmsError.SIM_BUSY)
        if self.sim_state is SimState.SIM_PIN:
            raise _SmsFault(CmsError.SIM_PIN_REQUIRED)
        if self.sim_state is SimState.SIM_PUK:
            raise _SmsFault(CmsError.SIM_PUK_REQUIRED)

    def _require_sms_ready(self) -> None:
        if self._sms_not_ready():
            # SIM800 and others before "SMS Ready": the SIM is READY, the SMS layer is not.
            raise _SmsFault(CmsError.SIM_BUSY)

    # ---- receiving (TS 27.005 section 3.4.1: +CNMI routing, +CMTI, +CMT, +CDS, +CDSI) -------

    def _receive_storage(self) -> MessageStorage:
        """<mem3>: where received messages and status reports are stored."""
        return self.storages[self.cpms[2]]

    def _arrive(self, incoming: Incoming) -> int | None:
        """Route one TPDU from the network per +CNMI; the index it was stored at, if it was."""
        if self.registration() != 1:
            self._waiting_for_network.append(incoming)
            return None
        # <ds> 0 stores a report unannounced, as <mt> 0 does with an SMS.
        routing = self.cnmi[3] if incoming.is_report else self.cnmi[1]
        # Only class 3 messages go direct with <mt>=3; the simulated network sends no class.
        if routing == (1 if incoming.is_report else 2):
            self._deliver_direct(incoming)
            return None
        storage = self._receive_storage()
        index = storage.store(
            StoredSms(
                MessageStatus.REC_UNREAD,
                join_sca(self.options.smsc, incoming.tpdu),
                len(incoming.tpdu),
            )
        )
        if index is None:
            # Memory capacity exceeded (TS 24.011 RP-cause 22): the modem refuses it and says
            # nothing to the TE; the network keeps it until memory is available again.
            self._waiting_for_memory.append(incoming)
            return None
        indicated = routing == 2 if incoming.is_report else routing in (1, 3)
        if indicated:
            name = "+CDSI" if incoming.is_report else "+CMTI"
            self._urc(f'{name}: "{storage.name}",{index}')
        return index

    def _deliver_direct(self, incoming: Incoming) -> None:
        if self._unacked is not None:
            self._direct_queue.append(incoming)
            return
        length = len(incoming.tpdu)
        head = f"+CDS: {length}" if incoming.is_report else f"+CMT: ,{length}"
        pdu = join_sca(self.options.smsc, incoming.tpdu).hex().upper()
        self._urc(f"{head}\r\n{pdu}")
        if self.csms_service == 1:
            # Phase 2+: the TE must acknowledge with +CNMA (TS 27.005 section 3.4.4).
            self._unacked = incoming
            self._ack_token += 1
            self._add_timer(self._due() + self.options.ack_timeout, _AckTimeout(self._ack_token))

    def _ack_timed_out(self, token: int) -> None:
        if self._unacked is None or token != self._ack_token:
            return
        # TS 27.005 section 3.4.1: without an acknowledgement the ME sets <mt> and <ds> to 0;
        # the network's retry, and everything queued behind it, is then stored unannounced.
        self.cnmi[1] = 0
        self.cnmi[3] = 0
        pending = [self._unacked, *self._direct_queue]
        self._unacked = None
        self._direct_queue.clear()
        for incoming in pending:
            self._arrive(incoming)

    def _urc(self, text: str) -> None:
        if self.cnmi[0] == 0:
            # <mode> 0: the TA buffers indications until +CNMI asks for them.
            self._ta_buffer.append(text)
            return
        self._hold(text)

    def _hold(self, text: str) -> None:
        if not self._held:
            self._held_since = self._now
            self._hold_for = self.profile.urc_hold
            chance = self.options.urc_in_response
            if chance and self._lossy.random() < chance:
                self._hold_for = max(self._hold_for, URC_RESPONSE_WAIT)
            if self._hold_for:
                self._add_timer(self._now + self._hold_for, _Wake())
        self._held.append(text)
        chance = self.options.duplicate_urc
        if chance and self._lossy.random() < chance:
            self._held.append(text)

    def _release_held(self) -> None:
        """Send held URCs, unless a prompt is open or the profile still holds them back."""
        if not self._held or self._pdu is not None:
            return
        if self._now < self._held_since + self._hold_for:
            return
        for text in self._held:
            self._emit(self._frame(text))
        self._held.clear()

    def _cnma(self, args: str) -> list[str]:
        params = parameters(args, 2)
        reply = 0 if params[0] is None else integer(params[0], 0, 2)
        if params[1] is not None and integer(params[1], 0, MAX_TPDU_OCTETS):
            # An RP-ACK/RP-ERROR carrying a TPDU of its own is not offered.
            raise _SmsFault(CmsError.OPERATION_NOT_SUPPORTED)
        if self.csms_service != 1 or self._unacked is None:
            raise _SmsFault(CmsError.NO_CNMA_EXPECTED)
        incoming, self._unacked = self._unacked, None
        self._ack_token += 1
        if reply == 2:
            # RP-ERROR: the network keeps the message and tries again later.
            self._add_timer(self._now + self.options.ack_timeout, _Arrival(incoming))
        if self._direct_queue:
            self._deliver_direct(self._direct_queue.popleft())
        return []

    # ---- stored messages (TS 27.005 sections 3.4.3, 3.5.2-3.5.4) ------------------------------

    def _read_storage(self) -> MessageStorage:
        """<mem1>: where +CMGR, +CMGL and +CMGD read and delete."""
        return self.storages[self.cpms[0]]

    def _require_pdu_mode(self) -> None:
        if self.cmgf != 0:
            # Text mode is not offered for messages: the gateway reads and sends PDUs only.
            raise _SmsFault(CmsError.OPERATION_NOT_ALLOWED)

    def _cmgr(self, args: str) -> list[str]:
        params = parameters(args, 2)
        index = integer(params[0], 0, 65535)
        keep_status = params[1] is not None and integer(params[1], 0, 1) == 1
        self._require_pdu_mode()
        self._require_sim_for_sms()
        storage = self._read_storage()
        if not storage.valid(index):
            raise _SmsFault(CmsError.INVALID_MEMORY_INDEX)
        sms = storage.get(index)
        if sms is None:
            # An empty slot reads as nothing, as on SIM800 and Quectel modems.
            return []
        if not keep_status:
            storage.mark_read(index)
        return [f"+CMGR: {int(sms.status)},,{sms.tpdu_length}", sms.pdu.hex().upper()]

    def _cmgl(self, args: str) -> list[str]:
        params = parameters(args, 2)
        # TS 27.005 section 3.5.2: without <stat> the list is of REC UNREAD messages.
        stat = 0 if params[0] is None else integer(params[0], 0, 4)
        keep_status = params[1] is not None and integer(params[1], 0, 1) == 1
        self._require_pdu_mode()
        self._require_sim_for_sms()
        storage = self._read_storage()
        lines: list[str] = []
        for index, sms in storage.listing(stat):
            lines += [f"+CMGL: {index},{int(sms.status)},,{sms.tpdu_length}", sms.pdu.hex().upper()]
            if not keep_status:
                storage.mark_read(index)
        return lines

    def _cmgl_test(self, args: str) -> list[str]:
        return ["+CMGL: (0-4)"]

    def _cmgd(self, args: str) -> list[str]:
        params = parameters(args, 2)
        index = integer(params[0], 0, 65535)
        delflag = 0 if params[1] is None else integer(params[1], 0, 4)
        self._require_sim_for_sms()
        storage = self._read_storage()
        if delflag:
            # TS 27.005 section 3.5.4: with a <delflag> above 0 the <index> is ignored.
            storage.delete_flagged(delflag)
        elif storage.valid(index):
            storage.delete(index)
        else:
            raise _SmsFault(CmsError.INVALID_MEMORY_INDEX)
        return []

    def _cmgd_test(self, args: str) -> list[str]:
        self._require_sim_for_sms()
        indexes = ",".join(str(index) for index in self._read_storage().indexes())
        return [f"+CMGD: ({indexes}),(0-4)"]

    def _cmgw(self, args: str) -> list[str]:
        params = parameters(args, 2)
        length = integer(params[0], 0, 999)
        status = MessageStatus.STO_UNSENT
        if params[1] is not None:
            status = MessageStatus(integer(params[1], 0, 3))
        self._require_pdu_mode()
        self._require_sim_for_sms()
        if not 1 <= length <= MAX_TPDU_OCTETS:
            raise _SmsFault(CmsError.INVALID_PDU_MODE_PARAMETER)
        if self.storages[self.cpms[1]].full:
            raise _SmsFault(CmsError.MEMORY_FULL)
        self._pdu = _PduInput(length, status)
        return []

    def _write(self, pdu: _PduInput, status: MessageStatus) -> None:
        try:
            octets = _pdu_octets(pdu)
        except _SmsFault as fault:
            self._emit(self._final(self._error_code(fault)))
            return
        storage = self.storages[self.cpms[1]]
        index = storage.store(StoredSms(status, octets, pdu.length))
        if index is None:
            self._emit(self._final(self._error_code(_SmsFault(CmsError.MEMORY_FULL))))
            return
        self._emit(self._information([[f"+CMGW: {index}"]]) + self._final(b"OK"))

    # ---- V.250 basic commands ----------------------------------------------------------------

    def _echo(self, args: str) -> list[str]:
        self.echo = on_off(args)
        return []

    def _reset(self, args: str) -> list[str]:
        if args not in ("", "0"):
            raise CommandSyntaxError(args)
        self._reset_settings()
        return []

    def _identify(self, args: str) -> list[str]:
        if args not in ("", "0"):
            raise CommandSyntaxError(args)
        return [MANUFACTURER, MODEL, f"Revision: {REVISION}"]

    def _verbose(self, args: str) -> list[str]:
        # Only verbose result codes (V1) are offered; the gateway never asks for V0.
        if args != "1":
            raise CommandSyntaxError(args)
        return []

    def _quiet(self, args: str) -> list[str]:
        if args not in ("", "0"):
            raise CommandSyntaxError(args)
        return []

    def _s_register(self, args: str) -> list[str]:
        number, equals, value = args.partition("=")
        register = integer(number, 0, 255)
        if register not in self.s_registers:
            raise CommandSyntaxError(args)
        if not equals:
            return [f"{self.s_registers[register]:03d}"]
        self.s_registers[register] = integer(value, 0, 255)
        return []

    # ---- identity (TS 27.007 section 5) ------------------------------------------------------

    def _manufacturer(self, args: str) -> list[str]:
        return [MANUFACTURER]

    def _model(self, args: str) -> list[str]:
        return [MODEL]

    def _revision(self, args: str) -> list[str]:
        return [REVISION]

    def _imei(self, args: str) -> list[str]:
        return [self.options.imei]

    def _imsi(self, args: str) -> list[str]:
        self._require_sim_for_me()
        return [self.options.imsi]

    def _ccid(self, args: str) -> list[str]:
        # SIM800 style: the bare digits. The ICCID is readable without the PIN.
        return [self.options.iccid]

    def _iccid(self, args: str) -> list[str]:
        # Quectel style: prefixed.
        return [f"+ICCID: {self.options.iccid}"]

    # ---- control (TS 27.007 sections 8 and 9) ------------------------------------------------

    def _cmee_set(self, args: str) -> list[str]:
        (mode,) = parameters(args, 1)
        self.cmee = integer(mode, 0, 2)
        return []

    def _cmee_read(self, args: str) -> list[str]:
        return [f"+CMEE: {self.cmee}"]

    def _cmee_test(self, args: str) -> list[str]:
        return ["+CMEE: (0-2)"]

    def _cpin_read(self, args: str) -> list[str]:
        if self._sim_busy_now():
            raise _MeFault(CmeError.SIM_BUSY)
        return [f"+CPIN: {self.sim_state.value}"]

    def _cpin_set(self, args: str) -> list[str]:
        params = quoted_or_bare(args)
        if self._sim_busy_now():
            raise _MeFault(CmeError.SIM_BUSY)
        if self.sim_state is SimState.READY:
            raise _MeFault(CmeError.OPERATION_NOT_ALLOWED)
        if self.sim_state is SimState.SIM_PIN:
            if len(params) != 1:
                raise CommandSyntaxError(args)
            if params[0] != self._pin:
                self._pin_attempts -= 1
                if self._pin_attempts == 0:
                    self.sim_state = SimState.SIM_PUK
                raise _MeFault(CmeError.INCORRECT_PASSWORD)
        else:
            if len(params) != 2:
                raise _MeFault(CmeError.SIM_PUK_REQUIRED)
            if params[0] != self.options.puk:
                raise _MeFault(CmeError.INCORRECT_PASSWORD)
            self._pin = params[1]
        self.sim_state = SimState.READY
        self._pin_attempts = PIN_ATTEMPTS
        self._sim_ready_at = self._due()
        self._wake_at_registration()
        return []

    def _cfun_set(self, args: str) -> list[str]:
        params = parameters(args, 2)
        fun = integer(params[0], 0, 4)
        reset = params[1] is not None and integer(params[1], 0, 1) == 1
        if fun not in (0, 1, 4):
            raise _MeFault(CmeError.OPERATION_NOT_SUPPORTED)
        if reset:
            self._restart(self._due())
        radio_back = fun == 1 and self.cfun != 1
        self.cfun = fun
        if radio_back and self._sim_ready_at is not None:
            # The radio comes back on: registration starts over.
            self._sim_ready_at = self._due()
            self._wake_at_registration()
        return []

    def _cfun_read(self, args: str) -> list[str]:
        return [f"+CFUN: {self.cfun}"]

    def _cfun_test(self, args: str) -> list[str]:
        return ["+CFUN: (0,1,4),(0,1)"]

    def _clac(self, args: str) -> list[str]:
        return sorted({f"AT{name}" for name, _form in HANDLERS})

    def _cnum(self, args: str) -> list[str]:
        self._require_sim_for_me()
        # Like most prepaid SIMs, the simulated one does not store its own number.
        return []

    def _csq(self, args: str) -> list[str]:
        return [f"+CSQ: {self.options.signal},99"]

    def _csq_test(self, args: str) -> list[str]:
        return ["+CSQ: (0-31,99),(0-7,99)"]

    # ---- network registration (TS 27.007 sections 7.2, 7.3, 10.1.22) -------------------------

    def _creg_set(self, args: str) -> list[str]:
        (mode,) = parameters(args, 1)
        self.creg_mode = integer(mode, 0, 2)
        return []

    def _creg_read(self, args: str) -> list[str]:
        return [_registration_line("+CREG", self.creg_mode, self.registration())]

    def _creg_test(self, args: str) -> list[str]:
        return ["+CREG: (0-2)"]

    def _cereg_set(self, args: str) -> list[str]:
        (mode,) = parameters(args, 1)
        self.cereg_mode = integer(mode, 0, 2)
        return []

    def _cereg_read(self, args: str) -> list[str]:
        return [_registration_line("+CEREG", self.cereg_mode, self.registration())]

    def _cereg_test(self, args: str) -> list[str]:
        return ["+CEREG: (0-2)"]

    def _operator_names(self) -> tuple[str, str, str]:
        long_name = self.options.operator
        return long_name, long_name.split(" ")[0][:16], self.options.imsi[:5]

    def _cops_read(self, args: str) -> list[str]:
        if self.registration() != 1:
            return ["+COPS: 0"]
        name = self._operator_names()[self.cops_format]
        # <AcT> 0: GSM.
        return [f'+COPS: 0,{self.cops_format},"{name}",0']

    def _cops_set(self, args: str) -> list[str]:
        params = parameters(args, 3)
        mode = integer(params[0], 0, 4)
        if mode not in (0, 3):
            # Only automatic selection: the simulated network is the only one there is.
            raise _MeFault(CmeError.OPERATION_NOT_ALLOWED)
        if params[1] is not None:
            self.cops_format = integer(params[1], 0, 2)
        return []

    def _cops_test(self, args: str) -> list[str]:
        long_name, short_name, numeric = self._operator_names()
        status = 2 if self.registration() == 1 else 1
        return [f'+COPS: ({status},"{long_name}","{short_name}","{numeric}",0),,(0-4),(0-2)']

    # ---- SMS settings (TS 27.005 section 3) ---------------------------------------------------

    def _cmgf_set(self, args: str) -> list[str]:
        (mode,) = parameters(args, 1)
        self.cmgf = integer(mode, 0, 1)
        return []

    def _cmgf_read(self, args: str) -> list[str]:
        return [f"+CMGF: {self.cmgf}"]

    def _cmgf_test(self, args: str) -> list[str]:
        return ["+CMGF: (0,1)"]

    def _cscs_set(self, args: str) -> list[str]:
        (charset,) = quoted_or_bare(args)
        if charset.upper() not in ("IRA", "GSM", "UCS2"):
            raise CommandSyntaxError(args)
        self.cscs = charset.upper()
        return []

    def _cscs_read(self, args: str) -> list[str]:
        return [f'+CSCS: "{self.cscs}"']

    def _cscs_test(self, args: str) -> list[str]:
        return ['+CSCS: ("IRA","GSM","UCS2")']

    def _csms_set(self, args: str) -> list[str]:
        (service,) = parameters(args, 1)
        value = integer(service, 0, 1)
        self._require_sim_for_sms()
        self.csms_service = value
        return ["+CSMS: 1,1,1"]

    def _csms_read(self, args: str) -> list[str]:
        self._require_sim_for_sms()
        return [f"+CSMS: {self.csms_service},1,1,1"]

    def _csms_test(self, args: str) -> list[str]:
        return ["+CSMS: (0,1)"]

    def _cpms_set(self, args: str) -> list[str]:
        memories = [memory.upper() for memory in quoted_or_bare(args)]
        if not 1 <= len(memories) <= 3:
            raise CommandSyntaxError(args)
        self._require_sim_for_sms()
        if any(memory not in self.storages for memory in memories):
            raise _SmsFault(CmsError.OPERATION_NOT_SUPPORTED)
        self.cpms[: len(memories)] = memories
        counts = (self.storages[memory] for memory in self.cpms)
        return ["+CPMS: " + ",".join(f"{store.used},{store.capacity}" for store in counts)]

    def _cpms_read(self, args: str) -> list[str]:
        self._require_sim_for_sms()
        counts = (self.storages[memory] for memory in self.cpms)
        return ["+CPMS: " + ",".join(f'"{s.name}",{s.used},{s.capacity}' for s in counts)]

    def _cpms_test(self, args: str) -> list[str]:
        choices = "(" + ",".join(f'"{memory}"' for memory in STORAGE_NAMES) + ")"
        return ["+CPMS: " + ",".join([choices] * 3)]

    def _cnmi_set(self, args: str) -> list[str]:
        self._require_sms_ready()
        params = parameters(args, 5)
        limits = (3, 3, 3, 2, 1)
        settings = list(self.cnmi)
        for index, (param, limit) in enumerate(zip(params, limits, strict=True)):
            if param is not None:
                settings[index] = integer(param, 0, 255)
                if settings[index] > limit:
                    raise _SmsFault(CmsError.OPERATION_NOT_SUPPORTED)
        self.cnmi = settings
        if settings[0] != 0:
            # TS 27.005 section 3.4.1: entering <mode> 1..3 flushes the TA buffer after the OK
            # (<bfr> 0) or clears it (<bfr> 1).
            if settings[4] == 0:
                for text in self._ta_buffer:
                    self._hold(text)
            self._ta_buffer.clear()
        return []

    def _csmp_set(self, args: str) -> list[str]:
        params = parameters(args, 4)
        settings = list(self.csmp)
        for index, param in enumerate(params):
            if param is not None:
                settings[index] = integer(param, 0, 255)
        self.csmp = settings
        return []

    def _csmp_read(self, args: str) -> list[str]:
        return ["+CSMP: " + ",".join(str(value) for value in self.csmp)]

    def _cnmi_read(self, args: str) -> list[str]:
        return ["+CNMI: " + ",".join(str(value) for value in self.cnmi)]

    def _cnmi_test(self, args: str) -> list[str]:
        return ["+CNMI: (0-3),(0-3),(0-3),(0-2),(0,1)"]

    def _csca_set(self, args: str) -> list[str]:
        params = quoted_or_bare(args)
        if not 1 <= len(params) <= 2 or not params[0]:
            raise CommandSyntaxError(args)
        self._require_sim_for_sms()
        self._smsc = params[0]
        return []

    def _csca_read(self, args: str) -> list[str]:
        self._require_sim_for_sms()
        # <tosca> 145: international number, 129: unknown (TS 24.008 section 10.5.4.7).
        type_of_address = 145 if self._smsc.startswith("+") else 129
        return [f'+CSCA: "{self._smsc}",{type_of_address}']

    # ---- sending (TS 27.005 section 3.5.1, PDU mode; 4.3, text mode) ------------------------

    def _cmgs(self, args: str) -> list[str]:
        if self.cmgf != 0:
            # Text mode takes AT+CMGS=<da>[,<toda>] and sends what is typed as the text: in
            # this mode "AT+CMGS=23" is an SMS to the number 23, as on real modems.
            params = quoted_or_bare(args)
            if not 1 <= len(params) <= 2 or not params[0]:
                raise CommandSyntaxError(args)
            self._require_sim_for_sms()
            self._pdu = _PduInput(0, text_to=params[0])
            return []
        (length_param,) = parameters(args, 1)
        length = integer(length_param, 0, 999)
        self._require_sim_for_sms()
        if not 1 <= length <= MAX_TPDU_OCTETS:
            raise _SmsFault(CmsError.INVALID_PDU_MODE_PARAMETER)
        self._pdu = _PduInput(length)
        return []

    def _submit(self, pdu: _PduInput) -> None:
        try:
            if self.registration() != 1:
                raise _SmsFault(CmsError.NO_NETWORK_SERVICE)
            tpdu = _tpdu(pdu)
            self._submits += 1
            failed = self.cms_fail_every > 0 and self._submits % self.cms_fail_every == 0
            mr = self._next_mr
            sent = None if failed else decode_sent_sms(tpdu, mr)
        except GsmError:
            fault = _SmsFault(CmsError.INVALID_PDU_MODE_PARAMETER)
            self._emit(self._final(self._error_code(fault)))
            return
        except _SmsFault as fault:
            self._emit(self._final(self._error_code(fault)))
            return
        # The network's answer takes send_delay; everything after it waits its turn.
        due = self._due() + self.send_delay
        self._busy_until = due
        if sent is None:
            failure = self._error_code(_SmsFault(CmsError.UNKNOWN_ERROR))
            self._emit(self._final(failure), due)
            return
        # TS 23.040 section 9.2.3.6: TP-MR counts 0..255 and wraps.
        self._next_mr = (mr + 1) % 256
        data = self._information([[f"+CMGS: {mr}"]]) + self._final(b"OK")
        self._emit(data, due, sent)

    def _submit_text(self, pdu: _PduInput, recipient: str) -> None:
        """A text-mode SMS (TS 27.005 section 4.3): the typed characters as its text, the
        first octet of +CSMP saying whether a status report is wanted (TP-SRR, 0x20) and its
        third the TP-PID (section 3.3.2)."""
        if self.registration() != 1:
            self._emit(self._final(self._error_code(_SmsFault(CmsError.NO_NETWORK_SERVICE))))
            return
        mr = self._next_mr
        self._next_mr = (mr + 1) % 256
        sent = SentSms(
            recipient=recipient,
            text=pdu.hex.decode("latin-1"),
            dcs=self.csmp[3],
            udh=b"",
            payload=bytes(pdu.hex),
            message_reference=mr,
            status_report=bool(self.csmp[0] & 0x20),
            validity_minutes=None,
            concat=None,
            pid=self.csmp[2],
            message_class=message_class(self.csmp[3]),
        )
        due = self._due() + self.send_delay
        self._busy_until = due
        self._emit(self._information([[f"+CMGS: {mr}"]]) + self._final(b"OK"), due, sent)


def _tpdu(pdu: _PduInput) -> bytes:
    """The TPDU of the text after the prompt; +CMS ERROR 304 if it is not what was announced."""
    _smsc, tpdu = split_sca(_pdu_octets(pdu))
    if len(tpdu) != pdu.length:
        raise _SmsFault(CmsError.INVALID_PDU_MODE_PARAMETER)
    return tpdu


def _pdu_octets(pdu: _PduInput) -> bytes:
    """The octets typed after the prompt (SMSC address and TPDU), checked against the length."""
    if pdu.overflow:
        raise _SmsFault(CmsError.INVALID_PDU_MODE_PARAMETER)
    try:
        octets = bytes.fromhex(pdu.hex.decode("latin-1"))
    except ValueError:
        raise _SmsFault(CmsError.INVALID_PDU_MODE_PARAMETER) from None
    if b" " in pdu.hex or b"\t" in pdu.hex:
        # bytes.fromhex skips spaces; a modem does not.
        raise _SmsFault(CmsError.INVALID_PDU_MODE_PARAMETER)
    try:
        _smsc, tpdu = split_sca(octets)
    except GsmError:
        raise _SmsFault(CmsError.INVALID_PDU_MODE_PARAMETER) from None
    if len(tpdu) != pdu.length:
        raise _SmsFault(CmsError.INVALID_PDU_MODE_PARAMETER)
    return octets


def _find_first(data: bytes, start: int, first: int, second: int) -> int:
    """The index of the first `first` or `second` octet in `data` from `start`, or -1."""
    one = data.find(first, start)
    two = data.find(second, start)
    if one < 0 or (0 <= two < one):
        return two
    return one


def _fill_with_old_messages(storage: MessageStorage, smsc: str) -> None:
    """Fill every slot with a read SMS-DELIVER, as on a SIM nobody has emptied for years."""
    while not storage.full:
        number = storage.used + 1
        part = EncodedPart(dcs=0, udh=b"", payload=encode_gsm(f"Old message {number}"))
        tpdu = build_deliver(OLD_MESSAGES_SENDER, part, timestamp=OLD_MESSAGES_TIME)
        storage.store(StoredSms(MessageStatus.REC_READ, join_sca(smsc, tpdu), len(tpdu)))


def _noise(rng: random.Random) -> bytes:
    # No CR or LF, so noise never completes a line by itself, and no ">" that could pass for
    # the +CMGS prompt. Line noise is framing errors: at least one 0xFF, an octet no AT text
    # has (a burst of printable text would be indistinguishable from an answer).
    burst = bytearray(rng.choice(_NOISE_OCTETS) for _ in range(rng.randint(1, 8)))
    burst[rng.randrange(len(burst))] = 0xFF
    return bytes(burst)


_NOISE_OCTETS = bytes(octet for octet in range(256) if octet not in b"\r\n>")


def _fragments(reply: Reply, rng: random.Random) -> list[Reply]:
    """`reply` cut into pieces of 1 to 12 bytes, all due at once; the SMS goes with the first."""
    pieces: list[Reply] = []
    data = reply.data
    while data or not pieces:
        size = rng.randint(1, 12)
        pieces.append(Reply(reply.due, data[:size], reply.sent if not pieces else None))
        data = data[size:]
    return pieces


def _shares_prefix(urc: str, blocks: list[list[str]]) -> bool:
    prefix = urc.split(":", 1)[0] + ":"
    return any(line.startswith(prefix) for lines in blocks for line in lines)


def _registration_line(name: str, mode: int, stat: int, *, unsolicited: bool = False) -> str:
    """The read answer `<name>: <mode>,<stat>[,<lac>,<ci>]`, or the unsolicited line, which
    leaves out <mode>."""
    head = f"{name}: {stat}" if unsolicited else f"{name}: {mode},{stat}"
    if mode == 2 and stat in (1, 5):
        return f'{head},"{LOCATION_AREA}","{CELL_ID}"'
    return head


# The command table: (name, form) -> handler. A missing key answers ERROR.
HANDLERS: dict[tuple[str, Form], Handler] = {
    ("E", Form.BASIC): ModemEngine._echo,
    ("Z", Form.BASIC): ModemEngine._reset,
    ("&F", Form.BASIC): ModemEngine._reset,
    ("I", Form.BASIC): ModemEngine._identify,
    ("V", Form.BASIC): ModemEngine._verbose,
    ("Q", Form.BASIC): ModemEngine._quiet,
    ("S", Form.BASIC): ModemEngine._s_register,
    ("+CGMI", Form.EXEC): ModemEngine._manufacturer,
    ("+GMI", Form.EXEC): ModemEngine._manufacturer,
    ("+CGMM", Form.EXEC): ModemEngine._model,
    ("+GMM", Form.EXEC): ModemEngine._model,
    ("+CGMR", Form.EXEC): ModemEngine._revision,
    ("+GMR", Form.EXEC): ModemEngine._revision,
    ("+CGSN", Form.EXEC): ModemEngine._imei,
    ("+GSN", Form.EXEC): ModemEngine._imei,
    ("+CIMI", Form.EXEC): ModemEngine._imsi,
    ("+CCID", Form.EXEC): ModemEngine._ccid,
    ("+ICCID", Form.EXEC): ModemEngine._iccid,
    ("+CMEE", Form.SET): ModemEngine._cmee_set,
    ("+CMEE", Form.READ): ModemEngine._cmee_read,
    ("+CMEE", Form.TEST): ModemEngine._cmee_test,
    ("+CPIN", Form.READ): ModemEngine._cpin_read,
    ("+CPIN", Form.SET): ModemEngine._cpin_set,
    ("+CFUN", Form.SET): ModemEngine._cfun_set,
    ("+CFUN", Form.READ): ModemEngine._cfun_read,
    ("+CFUN", Form.TEST): ModemEngine._cfun_test,
    ("+CLAC", Form.EXEC): ModemEngine._clac,
    ("+CNUM", Form.EXEC): ModemEngine._cnum,
    ("+CSMP", Form.SET): ModemEngine._csmp_set,
    ("+CSMP", Form.READ): ModemEngine._csmp_read,
    ("+CSQ", Form.EXEC): ModemEngine._csq,
    ("+CSQ", Form.TEST): ModemEngine._csq_test,
    ("+CREG", Form.SET): ModemEngine._creg_set,
    ("+CREG", Form.READ): ModemEngine._creg_read,
    ("+CREG", Form.TEST): ModemEngine._creg_test,
    ("+CEREG", Form.SET): ModemEngine._cereg_set,
    ("+CEREG", Form.READ): ModemEngine._cereg_read,
    ("+CEREG", Form.TEST): ModemEngine._cereg_test,
    ("+COPS", Form.SET): ModemEngine._cops_set,
    ("+COPS", Form.READ): ModemEngine._cops_read,
    ("+COPS", Form.TEST): ModemEngine._cops_test,
    ("+CMGF", Form.SET): ModemEngine._cmgf_set,
    ("+CMGF", Form.READ): ModemEngine._cmgf_read,
    ("+CMGF", Form.TEST): ModemEngine._cmgf_test,
    ("+CSCS", Form.SET): ModemEngine._cscs_set,
    ("+CSCS", Form.READ): ModemEngine._cscs_read,
    ("+CSCS", Form.TEST): ModemEngine._cscs_test,
    ("+CSMS", Form.SET): ModemEngine._csms_set,
    ("+CSMS", Form.READ): ModemEngine._csms_read,
    ("+CSMS", Form.TEST): ModemEngine._csms_test,
    ("+CPMS", Form.SET): ModemEngine._cpms_set,
    ("+CPMS", Form.READ): ModemEngine._cpms_read,
    ("+CPMS", Form.TEST): ModemEngine._cpms_test,
    ("+CNMI", Form.SET): ModemEngine._cnmi_set,
    ("+CNMI", Form.READ): ModemEngine._cnmi_read,
    ("+CNMI", Form.TEST): ModemEngine._cnmi_test,
    ("+CSCA", Form.SET): ModemEngine._csca_set,
    ("+CSCA", Form.READ): ModemEngine._csca_read,
    ("+CMGS", Form.SET): ModemEngine._cmgs,
    ("+CMGW", Form.SET): ModemEngine._cmgw,
    ("+CMGR", Form.SET): ModemEngine._cmgr,
    ("+CMGL", Form.EXEC): ModemEngine._cmgl,
    ("+CMGL", Form.SET): ModemEngine._cmgl,
    ("+CMGL", Form.TEST): ModemEngine._cmgl_test,
    ("+CMGD", Form.SET): ModemEngine._cmgd,
    ("+CMGD", Form.TEST): ModemEngine._cmgd_test,
    ("+CNMA", Form.EXEC): ModemEngine._cnma,
    ("+CNMA", Form.SET): ModemEngine._cnma,
}
