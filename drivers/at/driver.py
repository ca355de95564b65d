"""The trio shell of the AT driver: one modem, one reader task, one command in flight.

It moves bytes between a port and `AtFramer`, owns every timeout and the recovery (reopen with
backoff); it never lets pyserial or framer exceptions reach a caller of `send`. Initialisation
and PDU-mode sending follow 3GPP TS 27.007 (8.3 +CPIN, 9.1 +CMEE) and TS 27.005 (3.2.3, 3.5.1).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import NoReturn

import msgspec
import trio

from drivers.at import commands
from drivers.at.commands import CmeError, cms_is_permanent
from drivers.at.errors import AtProtocolError
from drivers.at.framer import (
    NEED_DATA,
    AtFramer,
    FinalKind,
    FinalResult,
    Garbage,
    Prompt,
    Response,
    Urc,
)
from drivers.events import HealthChanged, ModemEvent, ModemState
from drivers.gsm import GsmError, build_submit, join_sca
from drivers.modem import Health, ModemError, ModemUnavailable, OutgoingPart, SendRejected
from drivers.transport import TransportError, open_serial

log = logging.getLogger("drivers.at")


class AtOptions(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """How to reach and drive one AT modem; embedded in the gateway's modem config."""

    # Device path, /dev/serial/by-id/... link, pty path or pyserial URL (socket://, loop://).
    port: str = ""
    # Line speed; ignored by USB modems that emulate a serial port, needed by real UARTs.
    baudrate: int = 115200
    # SIM PIN, entered once when the modem asks for it; a wrong PIN is never retried.
    pin: str | None = None
    # Longest wait for the answer to an ordinary command, and for the "> " of AT+CMGS.
    command_timeout: float = 10.0
    # Longest wait for +CMGS after the PDU: TS 27.005 allows the network up to 120 s.
    send_timeout: float = 120.0
    # Longest the whole initialisation may take, including waiting for the SIM to get ready.
    init_timeout: float = 60.0
    # Wait for each bare "AT" while synchronising with a modem that may still be booting.
    sync_timeout: float = 2.0
    # Bare "AT" attempts before the port is declared dead and reopened.
    sync_attempts: int = 5
    # Pause between +CPIN? polls while the SIM is busy or initialising.
    sim_poll_interval: float = 1.0
    # First pause before reopening a failed port; doubles per failure up to the maximum.
    reopen_backoff_initial: float = 1.0
    reopen_backoff_max: float = 60.0
    # Seconds between health polls (AT+CSQ, AT+CREG?) while idle; 0 disables them. A poll
    # that times out is how a hung modem is noticed.
    health_interval: float = 60.0
    # Unrecognised lines in a row, with nothing pending, before the link counts as garbled.
    garbage_limit: int = 32
    # Longest line accepted from the modem, in bytes.
    max_line: int = 4096
    # Events kept for a slow reader; when full the oldest is dropped and counted.
    event_buffer: int = 64


class _LinkFailed(Exception):
    """This connection to the modem is unusable; the run loop closes it and reopens."""


class _SimLocked(Exception):
    """The SIM needs a human (wrong PIN, PUK, no PIN configured); retrying cannot help."""


class _Link:
    """One open port and its framer; replaced wholesale on recovery."""

    def __init__(self, stream: trio.abc.Stream, max_line: int) -> None:
        self.stream = stream
        self.framer = AtFramer(max_line)
        self.replies_in, self.replies_out = trio.open_memory_channel[Response | Prompt](4)
        self.failed = trio.Event()
        self.reason = ""

    def fail(self, reason: str) -> None:
        if not self.failed.is_set():
            self.reason = reason
            self.failed.set()
            self.replies_in.close()


class AtModem:
    """`drivers.modem.Modem` over AT commands in PDU mode."""

    def __init__(
        self,
        name: str,
        options: AtOptions,
        *,
        open_stream: Callable[[], Awaitable[trio.abc.Stream]] | None = None,
    ) -> None:
        self.name = name
        self.options = options
        self._open_stream = open_stream or self._open_serial
        self._health = Health()
        self._lock = trio.Lock()
        self._link: _Link | None = None
        self._events_in, self._events_out = trio.open_memory_channel[ModemEvent](
            max(1, options.event_buffer)
        )
        # Events dropped because nobody read them: the oldest goes first, so the newest
        # health state is always there to read.
        self.events_dropped = 0
        self.urc_counts: Counter[str] = Counter()
        self.garbage_lines = 0
        self.signal: commands.SignalQuality | None = None
        self.registration: commands.Registration | None = None
        self._sim_locked = False

    async def _open_serial(self) -> trio.abc.Stream:
        return await open_serial(self.options.port, baudrate=self.options.baudrate)

    # ---- the Modem interface ---------------------------------------------------------------

    @property
    def events(self) -> trio.MemoryReceiveChannel[ModemEvent]:
        return self._events_out

    def health(self) -> Health:
        return msgspec.structs.replace(self._health)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Open, initialise, serve and recover until cancelled; `started()` at the first READY."""
        backoff = self.options.reopen_backoff_initial
        started = False
        while True:
            reason, became_ready = await self._connect_and_serve(None if started else task_status)
            started = started or became_ready
            if became_ready:
                backoff = self.options.reopen_backoff_initial
            if self._sim_locked:
                # Reopening would repeat the same refusal, and a PIN retry could block the SIM.
                log.error("modem %s: %s; needs a person", self.name, reason)
                await trio.sleep_forever()
            self._health.errors += 1
            self._health.recoveries += 1
            self._set_state(ModemState.FAILED, f"{reason}; reopening in {backoff:g} s")
            log.warning("modem %s failed: %s; reopening in %g s", self.name, reason, backoff)
            await trio.sleep(backoff)
            backoff = min(backoff * 2, self.options.reopen_backoff_max)

    async def send(self, outgoing: OutgoingPart) -> int:
        """Send one SMS-SUBMIT with AT+CMGS; return TP-MR (TS 27.005 section 3.5.1)."""
        try:
            tpdu = build_submit(
                outgoing.recipient,
                outgoing.part,
                status_report=outgoing.status_report,
                validity_minutes=outgoing.validity_minutes,
                pid=outgoing.pid,
            )
        except GsmError as exc:
            self._health.errors += 1
            raise SendRejected(f"cannot build the TPDU: {exc}", permanent=True) from exc
        pdu = join_sca("", tpdu).hex().upper()
        async with self._lock:
            try:
                link = self._ready_link()
                mr = await self._cmgs(link, len(tpdu), pdu)
            except trio.Cancelled:
                if self._link is not None:
                    # The modem may be half-way through AT+CMGS; only a fresh start is safe.
                    self._link.fail("send cancelled in the middle of AT+CMGS")
                raise
            except ModemError:
                self._health.errors += 1
                raise
            self._health.sent += 1
            return mr

    # ---- sending ---------------------------------------------------------------------------

    def _ready_link(self) -> _Link:
        link = self._link
        if link is None or link.failed.is_set() or self._health.state is not ModemState.READY:
            raise ModemUnavailable(f"modem {self.name} is not ready ({self._health.detail})")
        return link

    async def _cmgs(self, link: _Link, length: int, pdu: str) -> int:
        command = commands.cmgs(length)
        self._drain(link)
        link.framer.expect(command)
        link.framer.expect_prompt()
        first: Response | Prompt | None = None
        with trio.move_on_after(self.options.command_timeout):
            await self._write(link, command + "\r")
            first = await self._reply(link)
        if first is None:
            await self._abort_prompt(link)
            self._fail(link, f"no '> ' prompt within {self.options.command_timeout:g} s")
        if isinstance(first, Response):
            raise _rejection(first.final)
        with trio.move_on_after(self.options.send_timeout):
            await self._write(link, pdu + commands.CTRL_Z)
            reply = await self._reply(link)
            if isinstance(reply, Prompt):
                self._fail(link, "a second '> ' prompt for one AT+CMGS")
            if not reply.final.ok:
                raise _rejection(reply.final)
            try:
                return commands.parse_cmgs(reply.lines)
            except AtProtocolError as exc:
                self._fail(link, f"unreadable AT+CMGS answer: {exc}")
        self._fail(link, f"no +CMGS within {self.options.send_timeout:g} s")

    async def _abort_prompt(self, link: _Link) -> None:
        """ESC leaves the PDU entry without sending (TS 27.005 section 3.5.1)."""
        with trio.move_on_after(1.0):
            try:
                await link.stream.send_all(commands.ESC.encode("ascii"))
            except (TransportError, trio.BrokenResourceError, trio.ClosedResourceError):
                log.info("modem %s: could not write ESC to abort AT+CMGS", self.name)

    # ---- connection lifetime ---------------------------------------------------------------

    async def _connect_and_serve(
        self, task_status: trio.TaskStatus[None] | None
    ) -> tuple[str, bool]:
        """One open-initialise-serve cycle; returns why it ended and whether it got READY."""
        self._set_state(ModemState.STARTING, "opening the port")
        try:
            stream = await self._open_stream()
        except ModemError as exc:
            return f"cannot open the port: {exc}", False
        except Exception as exc:
            log.exception("modem %s: opening the port failed unexpectedly", self.name)
            return f"cannot open the port: {exc!r}", False
        link = _Link(stream, self.options.max_line)
        became_ready = False
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._read_loop, link)
                self._set_state(ModemState.STARTING, "initialising")
                try:
                    detail = await self._initialise_within_deadline(link)
                except _SimLocked as exc:
                    self._sim_locked = True
                    link.fail(str(exc))
                except (ModemError, AtProtocolError) as exc:
                    link.fail(str(exc))
                except Exception as exc:
                    log.exception("modem %s: initialisation failed unexpectedly", self.name)
                    link.fail(f"initialisation failed: {exc!r}")
                else:
                    self._link = link
                    became_ready = True
                    self._set_state(ModemState.READY, detail)
                    if task_status is not None:
                        task_status.started()
                    nursery.start_soon(self._health_loop, link)
                    await link.failed.wait()
                nursery.cancel_scope.cancel()
        finally:
            self._link = None
            with trio.CancelScope(shield=True), trio.move_on_after(5.0):
                await _close_quietly(stream)
        if self._sim_locked:
            self._set_state(ModemState.FAILED, link.reason)
        return link.reason, became_ready

    async def _initialise_within_deadline(self, link: _Link) -> str:
        with trio.move_on_after(self.options.init_timeout):
            return await self._initialise(link)
        self._fail(link, f"initialisation took longer than {self.options.init_timeout:g} s")

    async def _read_loop(self, link: _Link) -> None:
        """The one reader: bytes -> framer -> replies for the command in flight, or URCs."""
        garbage_run = 0
        try:
            while True:
                data = await link.stream.receive_some(4096)
                if not data:
                    link.fail("the port closed")
                    return
                link.framer.receive_data(data)
                while (event := link.framer.next_event()) is not NEED_DATA:
                    if isinstance(event, Garbage):
                        self.garbage_lines += 1
                        garbage_run += 1
                        log.debug("modem %s: unexpected line %r", self.name, event.line)
                        if garbage_run > self.options.garbage_limit:
                            link.fail(f"{garbage_run} unrecognised lines in a row")
                            return
                        continue
                    garbage_run = 0
                    if isinstance(event, Urc):
                        self._on_urc(event)
                    else:
                        link.replies_in.send_nowait(event)
        except AtProtocolError as exc:
            link.fail(f"garbled output: {exc}")
        except trio.WouldBlock:
            link.fail("answers arrived that no command asked for")
        except (TransportError, trio.BrokenResourceError) as exc:
            link.fail(f"the port failed: {exc}")
        except trio.ClosedResourceError:
            link.fail(link.reason or "the port closed")
        except Exception as exc:
            log.exception("modem %s: reader failed unexpectedly", self.name)
            link.fail(f"reader failed: {exc!r}")

    def _on_urc(self, urc: Urc) -> None:
        self.urc_counts[urc.name] += 1
        log.info("modem %s: unsolicited %s", self.name, urc.line)
        if urc.name == "+CREG":
            try:
                self.registration = commands.parse_creg((urc.line,))
            except AtProtocolError:
                log.info("modem %s: unreadable +CREG %r", self.name, urc.line)

    async def _health_loop(self, link: _Link) -> None:
        """Poll signal and registration; a poll that times out reveals a hung modem."""
        if self.options.health_interval <= 0:
            return
        while True:
            await trio.sleep(self.options.health_interval)
            async with self._lock:
                try:
                    self._health.detail = await self._poll_network(link)
                except ModemError:
                    return
                except AtProtocolError as exc:
                    link.fail(f"unreadable health answer: {exc}")
                    return

    # ---- initialisation --------------------------------------------------------------------

    async def _initialise(self, link: _Link) -> str:
        await self._synchronise(link)
        await self._expect_ok(link, commands.ECHO_OFF)
        await self._expect_ok(link, commands.CMEE_NUMERIC)
        await self._unlock_sim(link)
        # After the SIM: some modems refuse SMS commands until the SIM is ready.
        await self._expect_ok(link, commands.PDU_MODE)
        return await self._poll_network(link)

    async def _synchronise(self, link: _Link) -> None:
        """Bare "AT" until OK: the modem may be booting or still in a half-typed PDU."""
        for attempt in range(max(1, self.options.sync_attempts)):
            if attempt:
                await self._write(link, commands.ESC)
            reply = await self._exchange(link, commands.SYNC, self.options.sync_timeout)
            if reply is not None and reply.final.ok:
                return
        self._fail(link, f"no OK to AT after {self.options.sync_attempts} attempts")

    async def _unlock_sim(self, link: _Link) -> None:
        """AT+CPIN? until READY, entering the PIN at most once (TS 27.007 section 8.3)."""
        pin_entered = False
        while True:
            reply = await self._command(link, commands.CPIN_QUERY)
            code = commands.parse_cpin(reply.lines) if reply.final.ok else _sim_code(reply.final)
            self._health.sim = code
            if code in _SIM_READY:
                return
            if code == "SIM PIN" and not pin_entered:
                pin = self.options.pin
                if not pin:
                    raise _SimLocked("the SIM asks for its PIN and none is configured")
                try:
                    command = commands.cpin_enter(pin)
                except ValueError as exc:
                    raise _SimLocked(f"the configured PIN is unusable: {exc}") from None
                answer = await self._command(link, command)
                pin_entered = True
                if not answer.final.ok:
                    raise _SimLocked(f"the SIM rejected the PIN ({answer.final.text}); not retried")
                continue
            if code == "SIM PIN":
                raise _SimLocked("the SIM still asks for its PIN after it was entered")
            if code.startswith(("SIM PUK", "PH-")):
                raise _SimLocked(f"the SIM wants {code}; enter it by hand, it is never guessed")
            # SIM busy, not inserted or not yet initialised: may change without our help.
            await trio.sleep(self.options.sim_poll_interval)

    async def _poll_network(self, link: _Link) -> str:
        signal = await self._command(link, commands.CSQ)
        if signal.final.ok:
            self.signal = commands.parse_csq(signal.lines)
        registration = await self._command(link, commands.CREG_QUERY)
        if registration.final.ok:
            self.registration = commands.parse_creg(registration.lines)
        dbm = self.signal.dbm if self.signal is not None else None
        level = "signal unknown" if dbm is None else f"signal {dbm} dBm"
        network = (
            "registration unknown"
            if self.registration is None
            else self.registration.stat.name.lower().replace("_", " ")
        )
        return f"{level}, {network}"

    # ---- command plumbing ------------------------------------------------------------------

    async def _expect_ok(self, link: _Link, command: str) -> None:
        reply = await self._command(link, command)
        if not reply.final.ok:
            self._fail(link, f"{command} answered {reply.final.kind.value} {reply.final.text}")

    async def _command(self, link: _Link, command: str) -> Response:
        reply = await self._exchange(link, command, self.options.command_timeout)
        if reply is None:
            self._fail(link, f"no answer to {command} within {self.options.command_timeout:g} s")
        return reply

    async def _exchange(self, link: _Link, command: str, within: float) -> Response | None:
        """Write one command line and wait for its final result; None when `within` s passed."""
        self._drain(link)
        link.framer.expect(command)
        with trio.move_on_after(within):
            await self._write(link, command + "\r")
            reply = await self._reply(link)
            if isinstance(reply, Prompt):
                self._fail(link, f"a '> ' prompt answered {command}")
            return reply
        return None

    def _drain(self, link: _Link) -> None:
        """Drop late answers to commands given up on, so they are not taken for the next."""
        while True:
            try:
                stale = link.replies_out.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel):
                return
            log.info("modem %s: late answer dropped: %r", self.name, stale)

    async def _write(self, link: _Link, text: str) -> None:
        try:
            await link.stream.send_all(text.encode("ascii"))
        except (TransportError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            self._fail(link, f"write failed: {exc}")

    async def _reply(self, link: _Link) -> Response | Prompt:
        try:
            return await link.replies_out.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            raise ModemUnavailable(f"modem {self.name}: {link.reason}") from None

    def _fail(self, link: _Link, reason: str) -> NoReturn:
        link.fail(reason)
        raise ModemUnavailable(f"modem {self.name}: {reason}")

    # ---- health and events -----------------------------------------------------------------

    def _set_state(self, state: ModemState, detail: str) -> None:
        changed = state is not self._health.state
        self._health.state = state
        self._health.detail = detail
        if changed:
            self._emit(HealthChanged(modem=self.name, state=state, detail=detail))

    def _emit(self, event: ModemEvent) -> None:
        """Never blocks: when the buffer is full the oldest event makes room."""
        try:
            self._events_in.send_nowait(event)
            return
        except trio.WouldBlock:
            self.events_dropped += 1
        except trio.BrokenResourceError:
            self.events_dropped += 1
            return
        try:
            self._events_out.receive_nowait()
            self._events_in.send_nowait(event)
        except (trio.WouldBlock, trio.EndOfChannel, trio.BrokenResourceError):
            log.info("modem %s: event dropped: %r", self.name, event)


_SIM_READY = frozenset({"READY", "SIM PIN2", "SIM PUK2"})  # PIN2 guards no SMS command

# +CME ERROR answers to AT+CPIN? that stand for a +CPIN code (TS 27.007 section 9.2.1).
_CME_SIM_CODES: dict[int, str] = {
    CmeError.SIM_NOT_INSERTED: "SIM NOT INSERTED",
    CmeError.SIM_PIN_REQUIRED: "SIM PIN",
    CmeError.SIM_PUK_REQUIRED: "SIM PUK",
    CmeError.SIM_FAILURE: "SIM FAILURE",
    CmeError.SIM_BUSY: "SIM BUSY",
    CmeError.SIM_WRONG: "SIM WRONG",
    CmeError.PH_SIM_PIN_REQUIRED: "PH-SIM PIN",
}


def _sim_code(final: FinalResult) -> str:
    if final.kind is FinalKind.CME_ERROR and final.code is not None:
        known = _CME_SIM_CODES.get(final.code)
        if known is not None:
            return known
    return f"{final.kind.value} {final.text}".strip()


def _rejection(final: FinalResult) -> SendRejected:
    if final.kind is FinalKind.CMS_ERROR:
        code = final.code
        permanent = code is not None and cms_is_permanent(code)
        return SendRejected(f"+CMS ERROR: {final.text}", cms=code, permanent=permanent)
    return SendRejected(f"AT+CMGS answered {final.kind.value} {final.text}", permanent=False)


async def _close_quietly(stream: trio.abc.Stream) -> None:
    try:
        await stream.aclose()
    except (TransportError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
        log.info("closing the port failed: %s", exc)
