"""The trio shell of the AT driver: one modem, one reader task, one command in flight.

It moves bytes between a port and `AtFramer`, owns every timeout, receiving and the recovery
ladder; it never lets pyserial or framer exceptions reach a caller, and never deletes a stored
message before `acknowledge`. TS 27.007 (5, 7.2, 7.3, 8.3, 8.5, 9.1) and TS 27.005 (3.2-3.5).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Final, NoReturn, TypeVar

import msgspec
import trio

from drivers.at import commands
from drivers.at.awaiting import AwaitingTable, DeleteStep, DeleteTries, Offer
from drivers.at.commands import Cnmi, StoredPdu
from drivers.at.errors import AtProtocolError
from drivers.at.framer import (
    NEED_DATA,
    URC_NAMES,
    AtFramer,
    Garbage,
    Prompt,
    Response,
    Urc,
)
from drivers.at.locate import Identity, ModemLocator, close_quietly
from drivers.at.options import AtOptions
from drivers.at.policies import (
    IndicationChoice,
    Periodic,
    RejectionStreak,
    SimStep,
    SimUnlock,
    best_registration,
    make_room,
    network_detail,
    registration_name,
    sim_code,
    storage_in_use,
)
from drivers.at.receiving import (
    Direct,
    DirectStep,
    Indication,
    IndicationsOff,
    Restarted,
    StoragesSeen,
    Stored,
    Sweep,
    UndecodableDirect,
    UndecodableSeen,
    direct_step,
    is_empty_index,
    is_received,
    needs_switch,
    still_holds,
)
from drivers.at.recovery import (
    AnswerWait,
    CommandLadder,
    GarbageRun,
    ReopenLadder,
    ResyncNonces,
    Step,
    escapes,
    is_repeatable,
    means_restart,
    resync_answered,
)
from drivers.at.sending import Refused, Sent, Unreadable, pdu_answered, refused
from drivers.events import (
    HealthChanged,
    InboundSms,
    ModemEvent,
    ModemState,
    RegistrationChanged,
    StatusReportReceived,
    StorageRead,
)
from drivers.gsm import (
    GsmError,
    SmsDeliver,
    SmsStatusReport,
    build_submit,
    join_sca,
    parse_received,
    split_sca,
)
from drivers.modem import (
    Health,
    ModemError,
    ModemUnavailable,
    OutgoingPart,
    SendOutcomeUnknown,
    SendRejected,
)
from drivers.ports import CLAIMS
from drivers.transport import TransportError, open_serial

log = logging.getLogger("drivers.at")

# Unsolicited codes that are news, logged at info: the registration or the SIM changed. The
# rest are logged at debug: an SMS or a status report announced (it ends up in the store), a
# restart (logged as such), a call ringing (RING, +CLIP with the caller's number every few
# seconds), and what some modems report every few seconds (^RSSI, ^DSFLOWRPT), which at info
# was a line every few seconds in the journal.
_NEWS_URCS: Final = frozenset({"+CREG", "+CEREG", "+CPIN"})

# The key `AtModem.urc_counts` counts every unsolicited name no table knows under: a vendor's
# own, or a `+NAME:` a lossy link garbled into being, which counted by name would grow the
# counter by one key per garbled line for as long as the link garbles.
OTHER_URCS: Final = "other"


class _Unanswered(ModemUnavailable):
    """A command that is not safe to repeat lost its answer; the port is resynchronised, and
    whether the command took effect is for its caller to establish."""


class _SimLocked(Exception):
    """The SIM needs a human (wrong PIN, PUK, no PIN configured); retrying cannot help."""


_INDICATION_BUFFER = 64

_Read = TypeVar("_Read")  # what a parser of `commands` reads in an answer


class _Link:
    """One open port and its framer; replaced wholesale on recovery."""

    def __init__(self, stream: trio.abc.Stream, max_line: int, *, probe: bool = False) -> None:
        self.stream = stream
        self.framer = AtFramer(max_line)
        self.probe = probe  # an identity probe of a scan: unsolicited codes are not ours
        self.replies_in, self.replies_out = trio.open_memory_channel[Response | Prompt](4)
        self.indications_in, self.indications_out = trio.open_memory_channel[Indication](
            _INDICATION_BUFFER
        )
        self.failed = trio.Event()
        self.reason = ""
        self.serving = False  # initialised; a timeout now resynchronises before reopening
        self.cnmi: Cnmi | None = None
        self.cnma = False  # +CMT/+CDS wait for AT+CNMA (AT+CSMS=1 was accepted)
        # ATE0 took (no command after it came back echoed): an echo now says the modem
        # restarted without a word. Modems whose firmware ignores ATE0 give no such sign.
        self.echo_off = False
        self.indications_off = IndicationsOff()
        # The wait for the pending command's answer; text of that answer ends it early, so
        # that the waiter looks again (AnswerWait) without polling for it.
        self.answer_wait: trio.CancelScope | None = None

    def echoed_since(self, echoes: int) -> bool:
        """Whether a command came back echoed since the framer's count was `echoes`, although
        ATE0 took: the modem restarted without a word."""
        return self.echo_off and self.framer.echoes != echoes

    def fail(self, reason: str) -> None:
        if not self.failed.is_set():
            self.reason = reason
            self.failed.set()
            self.replies_in.close()


class AtModem:
    """`drivers.modem.Modem` over AT commands in PDU mode.

    Receiving: the driver asks for stored delivery (+CMTI, +CDSI) first, reads each message with
    AT+CMGR, emits it, and deletes it with AT+CMGD only in `acknowledge`, after the gateway has
    committed it. Inbound events are never dropped to make room: when the event buffer holds
    no HealthChanged to give way, a stored message is simply not emitted yet, and the storage
    sweep (AT+CMGL=4, at start-up and every `sweep_interval`) finds it again; the storage is
    the unbounded queue. A modem that only offers direct delivery (+CMT, +CDS) hands over a
    PDU that cannot wait for the store: with AT+CSMS=1 the driver acknowledges it (AT+CNMA)
    once the event is in the buffer, and leaves it unacknowledged when there is no room, so
    the network delivers it again later. Without AT+CSMS=1 the modem acknowledges by itself.
    """

    def __init__(
        self,
        name: str,
        options: AtOptions,
        *,
        open_stream: Callable[[], Awaitable[trio.abc.Stream]] | None = None,
        open_path: Callable[[str], Awaitable[trio.abc.Stream]] | None = None,
    ) -> None:
        self.name = name
        self.options = options
        self._open_stream = open_stream or self._open_located
        self._locator = ModemLocator(
            name,
            port=options.port,
            identity=Identity(imei=options.imei, iccid=options.iccid),
            scan=options.scan,
            probe_timeout=options.probe_timeout,
            open_path=open_path or self._open_serial_path,
            identify=self._identify,
        )
        self._health = Health()
        self._lock = trio.Lock()
        self._link: _Link | None = None
        self._events_in, self._events_out = trio.open_memory_channel[ModemEvent](
            max(1, options.event_buffer)
        )
        self.urc_counts: Counter[str] = Counter()
        self.signal: commands.SignalQuality | None = None
        self.registration: commands.Registration | None = None
        self.eps_registration: commands.Registration | None = None
        self._sim_locked = False
        # Stored messages emitted and not yet deleted (see AwaitingTable).
        self._awaiting = AwaitingTable(options.reemit_after)
        self._undecodable = UndecodableSeen()
        self._undecodable_direct = UndecodableDirect()
        self._storages_seen = StoragesSeen()
        self._storage_read = False  # StorageRead emitted
        self._registered: bool | None = None  # as last told by RegistrationChanged
        self._rejections = RejectionStreak(options.cms_reinit_after)
        self._nonces = ResyncNonces()

    @property
    def events_dropped(self) -> int:
        return self._health.events_dropped

    @property
    def garbage_lines(self) -> int:
        return self._health.garbage_lines

    # ---- the Modem interface ---------------------------------------------------------------

    @property
    def events(self) -> trio.MemoryReceiveChannel[ModemEvent]:
        return self._events_out

    def health(self) -> Health:
        return msgspec.structs.replace(self._health)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Open, initialise, serve and recover until cancelled; `started()` at the first READY.

        The recovery ladder: a lost answer is resynchronised and the command repeated
        (`CommandLadder`); when its retries run out the modem is re-initialised in place; when
        a resync fails the port is reopened (or found again by identity) with doubling backoff;
        after `quarantine_after` failed recoveries in a row the modem rests in QUARANTINED for
        `quarantine_seconds` (`ReopenLadder`).
        """
        options = self.options
        ladder = ReopenLadder(
            initial=options.reopen_backoff_initial,
            maximum=options.reopen_backoff_max,
            quarantine_after=options.quarantine_after,
            quarantine_seconds=options.quarantine_seconds,
        )
        started = False
        # A failure, and a quarantine, since the modem was last ready have been logged at
        # warning and error: the reopens and rests of an unplugged modem after them are logged
        # at info, not a warning a minute and an error every quarantine.
        warned = quarantined = False
        while True:
            reason, became_ready = await self._connect_and_serve(None if started else task_status)
            started = started or became_ready
            warned = warned and not became_ready
            quarantined = quarantined and not became_ready
            rest = ladder.ended(became_ready=became_ready, sim_locked=self._sim_locked)
            if rest.needs_person:
                log.error("modem %s: %s; needs a person", self.name, reason)
                await trio.sleep_forever()
            self._health.errors += 1
            self._health.recoveries += 1
            self._health.last_error = reason
            if rest.quarantine:
                self._set_state(
                    ModemState.QUARANTINED,
                    f"{reason}; {rest.failures} recoveries failed in a row, "
                    f"resting {rest.seconds:g} s",
                )
                log.log(
                    logging.INFO if quarantined else logging.ERROR,
                    "modem %s quarantined for %g s: %s",
                    self.name,
                    rest.seconds,
                    reason,
                )
                quarantined = True
            else:
                self._set_state(ModemState.FAILED, f"{reason}; reopening in {rest.seconds:g} s")
                log.log(
                    logging.INFO if warned else logging.WARNING,
                    "modem %s failed: %s; reopening in %g s",
                    self.name,
                    reason,
                    rest.seconds,
                )
                warned = True
            await trio.sleep(rest.seconds)

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
        await trio.lowlevel.checkpoint_if_cancelled()
        try:
            # A free lock is taken without a turn of the scheduler, so the AT+CMGS goes out
            # now; the send yields at its first write all the same.
            self._lock.acquire_nowait()
        except trio.WouldBlock:
            await self._lock.acquire()
        try:
            link = self._ready_link()
            mr = await self._cmgs(link, len(tpdu), pdu)
        except trio.Cancelled:
            if self._link is not None:
                # The modem may be half-way through AT+CMGS; only a fresh start is safe.
                self._link.fail("send cancelled in the middle of AT+CMGS")
            raise
        except SendRejected as exc:
            self._health.errors += 1
            self._health.last_error = str(exc)
            await self._count_rejection(link, tpdu, exc)
            raise
        except ModemError as exc:
            self._health.errors += 1
            self._health.last_error = str(exc)
            raise
        finally:
            self._lock.release()
        self._health.sent += 1
        self._rejections.sent()
        return mr

    async def acknowledge(self, event: InboundSms | StatusReportReceived) -> None:
        """Delete `event` from the modem's storage (AT+CMGD), now that the gateway has it.

        Only if the index still holds this very PDU: after a reconnect the same message may
        have been emitted twice, and its index reused by a newer one since the first delete.
        A directly delivered event (index None) was acknowledged with AT+CNMA already.
        When the modem is not ready, or the delete's answer is lost twice, the delete is
        deferred: the message stays committed in the awaiting table and a sweep (the next one
        on this connection, or the first after recovery) deletes it without emitting it again.
        Never raises for that.
        """
        if event.index is None:
            return
        key = (event.storage, event.index)
        self._awaiting.committed(key, event.pdu, trio.current_time())
        async with self._lock:
            try:
                link = self._ready_link()
            except ModemUnavailable:
                log.info("modem %s: deleting %s deferred: not ready", self.name, _describe(event))
                return
            tries = DeleteTries()
            while True:
                try:
                    await self._delete_if_still(link, key, event.pdu)
                    return
                except _Unanswered as exc:
                    why = str(exc)
                    step = tries.failed(answer_lost=True)
                except ModemError as exc:
                    why = str(exc)
                    step = tries.failed(answer_lost=False)
                except AtProtocolError as exc:
                    why = f"unreadable answer while deleting: {exc}"
                    link.fail(why)
                    step = tries.failed(answer_lost=False)
                if step is DeleteStep.DEFER:
                    break
            log.info("modem %s: deleting %s deferred: %s", self.name, _describe(event), why)
            if not link.failed.is_set():
                self._queue(link, Sweep())

    async def _delete_if_still(self, link: _Link, key: tuple[str, int], tpdu: bytes) -> None:
        """AT+CMGD of `key` if it still holds `tpdu` (it may hold a newer message by now)."""
        storage, index = key
        stored = await self._read_index(link, storage, index)
        if not still_holds(stored, tpdu):
            log.info(
                "modem %s: %s index %d no longer holds the acknowledged message",
                self.name,
                storage,
                index,
            )
        else:
            await self._delete_index(link, storage, index)
        self._awaiting.gone(key)

    # ---- sending ---------------------------------------------------------------------------

    def _ready_link(self) -> _Link:
        link = self._link
        if link is None or link.failed.is_set() or self._health.state is not ModemState.READY:
            raise ModemUnavailable(f"modem {self.name} is not ready ({self._health.detail})")
        return link

    async def _cmgs(self, link: _Link, length: int, pdu: str) -> int:
        """AT+CMGS, the PDU, and its answer. A lost final result is not a reason to send again:
        a `+CMGS: <mr>` that got through says the network took it; with nothing at all the
        outcome is unknown (SendOutcomeUnknown), and the gateway's retry makes it at-least-once.
        """
        command = commands.cmgs(length)
        self._drain(link)
        echoes = link.framer.echoes
        line = link.framer.send_command(command, prompt=True)
        first: Response | Prompt | None = None
        with trio.move_on_after(self.options.command_timeout):
            await self._write_bytes(link, line)
            first = await self._reply(link)
        if first is None:
            # ESC leaves a PDU entry the lost prompt may have opened: nothing was sent.
            await self._abort_prompt(link)
            reason = f"no '> ' prompt within {self.options.command_timeout:g} s"
            await self._resync(link, reason)
            raise ModemUnavailable(f"modem {self.name}: {reason}; resynchronised")
        if link.echoed_since(echoes):
            await self._restarted_before_pdu(link, first, command)
        if isinstance(first, Response):
            raise _rejection(refused(first.final))
        await self._write(link, pdu + commands.CTRL_Z)
        reply = await self._await_answer(link, self.options.send_timeout)
        if isinstance(reply, Prompt):
            self._fail(link, "a second '> ' prompt for one AT+CMGS")
        outcome = pdu_answered(reply, link.framer.partial)
        if isinstance(outcome, Sent):
            if outcome.final_lost:
                await self._resync(link, f"AT+CMGS answered +CMGS: {outcome.mr} without OK")
            return outcome.mr
        if isinstance(outcome, Refused):
            raise _rejection(outcome)
        if isinstance(outcome, Unreadable):
            # The modem said OK to the PDU: it went out, but with its TP-MR unreadable the
            # link is not to be trusted. Sending again is in_flight_after_crash's decision.
            link.fail(outcome.reason)
            raise SendOutcomeUnknown(
                f"modem {self.name}: {outcome.reason}; answered OK, so probably sent"
            )
        reason = f"no answer to the PDU within {self.options.send_timeout:g} s"
        await self._resync(link, reason)
        raise SendOutcomeUnknown(f"modem {self.name}: {reason}; sent or not is unknown")

    async def _restarted_before_pdu(
        self, link: _Link, first: Response | Prompt, command: str
    ) -> NoReturn:
        """AT+CMGS came back echoed although ATE0 took: the modem restarted without a word,
        maybe into text mode, where the line named a recipient (AT+CMGS=<da>, TS 27.005 4.3)
        and the PDU would be sent as its text. ESC quits the prompt without sending in either
        mode (3.5.1, 4.3); the modem is initialised again and the part is not sent."""
        if isinstance(first, Prompt):
            await self._abort_prompt(link)
            if await self._await_answer(link, self.options.query_timeout) is None:
                await self._resync(link, "no answer to ESC after an echoed AT+CMGS")
        restart = Restarted(f"silently: {command} came back echoed")
        await self._restarted(link, restart)
        raise ModemUnavailable(f"modem {self.name} restarted ({restart.line}); not sent")

    async def _abort_prompt(self, link: _Link) -> None:
        """ESC leaves the PDU entry without sending (TS 27.005 section 3.5.1)."""
        with trio.move_on_after(1.0):
            try:
                await link.stream.send_all(commands.ESC.encode("ascii"))
            except (TransportError, trio.BrokenResourceError, trio.ClosedResourceError):
                log.info("modem %s: could not write ESC to abort AT+CMGS", self.name)

    async def _count_rejection(self, link: _Link, tpdu: bytes, exc: SendRejected) -> None:
        """Transient rejections of different messages in a row point at the modem itself."""
        if not self._rejections.rejected(tpdu, permanent=exc.permanent):
            return
        limit = self._rejections.limit
        log.warning("modem %s: %d sends in a row rejected; re-initialising", self.name, limit)
        # The caller gets its rejection; the re-initialisation only has to not break the link.
        try:
            await self._reinitialise(link, f"{limit} sends in a row rejected ({exc})")
        except ModemError as error:
            log.warning("modem %s: re-initialisation failed: %s", self.name, error)

    # ---- connection lifetime ---------------------------------------------------------------

    async def _connect_and_serve(
        self, task_status: trio.TaskStatus[None] | None
    ) -> tuple[str, bool]:
        """One open-initialise-serve cycle; returns why it ended and whether it got READY."""
        self._set_state(ModemState.STARTING, "opening the port")
        try:
            try:
                stream = await self._open_stream()
            except ModemError as exc:
                return f"cannot open the port: {exc}", False
            except Exception as exc:
                log.exception("modem %s: opening the port failed unexpectedly", self.name)
                return f"cannot open the port: {exc!r}", False
            return await self._serve(stream, task_status)
        finally:
            self._health.port = ""
            CLAIMS.release_all(self.name)

    async def _serve(
        self, stream: trio.abc.Stream, task_status: trio.TaskStatus[None] | None
    ) -> tuple[str, bool]:
        link = _Link(stream, self.options.max_line)
        self._awaiting.reconnected()
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
                    link.serving = True
                    became_ready = True
                    self._set_state(ModemState.READY, detail)
                    if task_status is not None:
                        task_status.started()
                    nursery.start_soon(self._health_loop, link)
                    nursery.start_soon(self._receive_loop, link)
                    await link.failed.wait()
                nursery.cancel_scope.cancel()
        finally:
            self._link = None
            # Unplugged or hung, the modem may be off the network; a new link reads it again.
            self.registration = self.eps_registration = None
            if self._registered:
                self._registered_now(False)
            with trio.CancelScope(shield=True), trio.move_on_after(5.0):
                await close_quietly(stream)
        if self._sim_locked:
            self._set_state(ModemState.FAILED, link.reason)
        return link.reason, became_ready

    async def _initialise_within_deadline(self, link: _Link) -> str:
        with trio.move_on_after(self.options.init_timeout):
            return await self._initialise(link)
        self._fail(link, f"initialisation took longer than {self.options.init_timeout:g} s")

    async def _read_loop(self, link: _Link) -> None:
        """The one reader: bytes -> framer -> replies for the command in flight, or URCs."""
        garbage = GarbageRun(self.options.garbage_limit)
        try:
            while True:
                data = await link.stream.receive_some(4096)
                if not data:
                    link.fail("the port closed")
                    return
                link.framer.receive_data(data)
                while (event := link.framer.next_event()) is not NEED_DATA:
                    if isinstance(event, Garbage):
                        self._health.garbage_lines += 1
                        log.debug("modem %s: unexpected line %r", self.name, event.line)
                        if garbage.garbage():
                            link.fail(f"{garbage.length} unrecognised lines in a row")
                            return
                        continue
                    garbage.understood()
                    if isinstance(event, Urc):
                        if not link.probe:
                            self._on_urc(link, event)
                    else:
                        link.replies_in.send_nowait(event)
                if link.answer_wait is not None and link.framer.partial:
                    # Text of the pending answer, its final result not yet: look again.
                    link.answer_wait.cancel()
        except trio.WouldBlock:
            link.fail("answers arrived that no command asked for")
        except (TransportError, trio.BrokenResourceError) as exc:
            link.fail(f"the port failed: {exc}")
        except trio.ClosedResourceError:
            link.fail(link.reason or "the port closed")
        except Exception as exc:
            log.exception("modem %s: reader failed unexpectedly", self.name)
            link.fail(f"reader failed: {exc!r}")

    def _on_urc(self, link: _Link, urc: Urc) -> None:
        self.urc_counts[urc.name if urc.name in URC_NAMES else OTHER_URCS] += 1
        level = logging.INFO if urc.name in _NEWS_URCS else logging.DEBUG
        log.log(level, "modem %s: unsolicited %s", self.name, urc.line)
        try:
            if urc.name == "+CREG":
                self.registration = commands.parse_creg((urc.line,))
                self._update_registration()
            elif urc.name == "+CEREG":
                self.eps_registration = commands.parse_cereg((urc.line,))
                self._update_registration()
            elif urc.name == "+CPIN":
                self._health.sim = commands.parse_cpin((urc.line,))
            elif urc.name in ("+CMTI", "+CDSI"):
                storage, index = commands.parse_storage_indication(urc.line)
                self._queue(link, Stored(storage, index))
            elif urc.name in ("+CMT", "+CDS"):
                self._queue(link, Direct(urc))
            elif means_restart(urc.name) and link.serving:
                self._queue(link, Restarted(urc.line))
        except AtProtocolError as exc:
            log.info("modem %s: unreadable %s: %s", self.name, urc.line, exc)

    def _queue(self, link: _Link, indication: Indication) -> None:
        try:
            link.indications_in.send_nowait(indication)
        except trio.WouldBlock:
            if isinstance(indication, Restarted):
                # Left out, nothing would initialise the modem again: a reopen does, and its
                # sweep finds what the backlog had no room for.
                link.fail(f"the modem restarted ({indication.line}) with its backlog full")
                return
            # A stored message is found by the next sweep; a direct one goes unacknowledged
            # and the network delivers it again.
            log.warning(
                "modem %s: indication backlog full, %s left for later",
                self.name,
                _named(indication),
            )
            link.indications_off.dropped(indication)

    async def _health_loop(self, link: _Link) -> None:
        """Poll signal and registration; a poll that times out reveals a hung modem."""
        polls = Periodic(self.options.health_interval, trio.current_time(), at_once=False)
        while True:
            await trio.sleep_until(polls.next_at)
            async with self._lock:
                try:
                    echoes = link.framer.echoes
                    self._health.detail = await self._poll_network(link)
                    if (lost := await self._settings_lost(link, echoes)) is not None:
                        await self._restarted(link, Restarted(lost))
                except ModemError:
                    if link.failed.is_set():
                        return
            polls.done(trio.current_time())

    async def _settings_lost(self, link: _Link, echoes: int) -> str | None:
        """How the modem shows it restarted without a word (a watchdog, a brown-out, a hub
        that reset it; no RDY): the poll's commands, `echoes` the count before them, came back
        echoed although ATE0 took, or its error mode is back at the factory setting (a modem
        whose stored profile keeps numeric errors shows only the echo); with either, echo, PDU
        mode, indications and the PIN are gone. None while it is as initialised, or when the
        answers say nothing."""
        mode = self._read(await self._command(link, commands.CMEE_QUERY), commands.parse_cmee)
        if link.echoed_since(echoes):
            return "silently: the health poll's commands came back echoed"
        if mode is None or mode == commands.CMEE_NUMERIC_MODE:
            return None
        return f"silently: AT+CMEE? answered +CMEE: {mode}"

    # ---- receiving ---------------------------------------------------------------------------

    async def _receive_loop(self, link: _Link) -> None:
        """Read what the modem indicates, and sweep the storage now and every interval."""
        sweeps = Periodic(self.options.sweep_interval, trio.current_time(), at_once=True)
        while True:
            indication: Indication = Sweep()
            if not sweeps.due(trio.current_time()):
                with trio.move_on_at(sweeps.next_at):
                    indication = await link.indications_out.receive()
            try:
                if isinstance(indication, Direct):
                    await self._take_direct(link, indication.urc)
                    continue
                async with self._lock:
                    if link.failed.is_set():
                        return
                    if isinstance(indication, Restarted):
                        await self._restarted(link, indication)
                    elif isinstance(indication, Sweep):
                        try:
                            await self._sweep(link)
                        finally:
                            # Also when it failed: the next try is an interval away, not a
                            # loop of AT+CMGL=4 as fast as the modem answers.
                            sweeps.done(trio.current_time())
                    else:
                        await self._take_stored(link, indication)
            except ModemError as exc:
                if link.failed.is_set():
                    return
                log.info("modem %s: reading %s failed: %s", self.name, _named(indication), exc)
            except AtProtocolError as exc:
                self._health.errors += 1
                self._health.last_error = f"unreadable stored message: {exc}"
                log.warning("modem %s: %s", self.name, self._health.last_error)

    async def _restarted(self, link: _Link, indication: Restarted) -> None:
        """The modem restarted on its own (a brown-out, a watchdog), said so or seen by a health
        poll or a send's echo: its echo, error format, indications and an entered PIN are gone,
        so it is initialised again on the open port."""
        log.warning("modem %s restarted (%s); initialising it again", self.name, indication.line)
        link.serving = False
        try:
            await self._reinitialise(link, f"the modem restarted ({indication.line})")
        finally:
            link.serving = True

    async def _sweep(self, link: _Link) -> None:
        """AT+CMGL=4 in every storage in use: emit what is stored and not yet awaiting ack,
        and delete what the gateway committed while its delete could not be done. The first
        sweep that emitted all of it is followed by StorageRead."""
        if (setting := link.indications_off.due(link.cnmi)) is not None:
            reply = await self._command(link, setting.command)
            link.indications_off.set_again(ok=reply.final.ok)
        whole = True
        for storage in self._storages_seen.sweep_order(self._health.storage):
            async with self._reading_from(link, storage, may_refuse=True) as selected:
                if not selected:
                    # Offered by AT+CPMS=? yet refused now (TS 27.005 3.2.2: a storage the TA
                    # supports and the ME cannot use): left out of this sweep, not the link.
                    log.info("modem %s: AT+CPMS refused %s for reading", self.name, storage)
                    whole = False
                    continue
                reply = await self._command(link, commands.CMGL_ALL)
            if not reply.final.ok:
                log.info("modem %s: AT+CMGL=4 in %s: %s", self.name, storage, reply.final.text)
                whole = False
                continue
            listing = commands.parse_cmgl(reply.lines)
            if listing.skipped:
                whole = False
                # Not all of the storage was read (a modem fallen back to text mode lists
                # nothing readable): said once a sweep, and what awaits its delete is kept.
                self._health.errors += 1
                self._health.last_error = (
                    f"AT+CMGL=4 in {storage}: {listing.skipped} lines not read as PDU mode"
                )
                log.warning("modem %s: %s", self.name, self._health.last_error)
            else:
                indexes = {stored.index for stored in listing.messages} | set(listing.unreadable)
                self._awaiting.listed(storage, {(storage, index) for index in indexes})
            for stored in listing.messages:
                whole = await self._offer(link, storage, stored) and whole
            for index in listing.unreadable:
                # Garbled on the way (noise, a lost byte): read alone, it may come whole.
                log.info(
                    "modem %s: AT+CMGL=4 listed %s index %d unreadably; reading it alone",
                    self.name,
                    storage,
                    index,
                )
                try:
                    whole = await self._take_stored(link, Stored(storage, index)) and whole
                except AtProtocolError as exc:
                    whole = False
                    log.warning("modem %s: %s index %d: %s", self.name, storage, index, exc)
        if whole and not self._storage_read:
            # Into free room only, so that it takes none from a health change or a message
            # delivered directly: the next whole sweep tries again.
            try:
                self._events_in.send_nowait(StorageRead(modem=self.name))
            except (trio.WouldBlock, trio.BrokenResourceError):
                return
            self._storage_read = True

    async def _take_stored(self, link: _Link, indication: Stored) -> bool:
        """Read one stored message and offer it; False when it is left for a later sweep."""
        self._storages_seen.indicated(indication.storage)
        key = (indication.storage, indication.index)
        if self._awaiting.awaited(key, trio.current_time()):
            # A duplicated +CMTI/+CDSI, or one for a message emitted already.
            return True
        stored = await self._read_index(link, indication.storage, indication.index)
        if stored is None:
            log.info("modem %s: %r was empty when read", self.name, indication)
            return True
        return await self._offer(link, indication.storage, stored)

    async def _offer(self, link: _Link, storage: str, stored: StoredPdu) -> bool:
        """Emit one stored message once per connection, until it is acknowledged; False when
        the event buffer had no room for it, so that a later sweep emits it."""
        if not is_received(stored.stat):
            return True
        key = (storage, stored.index)
        try:
            smsc, tpdu = split_sca(stored.pdu)
        except GsmError as exc:
            await self._on_undecodable(link, storage, stored, exc)
            return True
        offer = self._awaiting.offer(key, tpdu, trio.current_time())
        if offer is Offer.SKIP:
            return True
        if offer is Offer.DELETE:
            # Committed by the gateway; the listing shows this very PDU at this index.
            try:
                await self._delete_index(link, storage, stored.index)
            except _Unanswered as exc:
                # Resynchronised; the next sweep's listing shows whether it went.
                log.info("modem %s: deleting %s index %d: %s", self.name, storage, key[1], exc)
                return True
            self._awaiting.gone(key)
            return True
        try:
            decoded = parse_received(tpdu)
        except GsmError as exc:
            await self._on_undecodable(link, storage, stored, exc)
            return True
        event = _event(self.name, storage, stored.index, smsc, tpdu, decoded)
        if not self._emit_inbound(event):
            return False
        self._awaiting.emitted(key, tpdu, trio.current_time())
        return True

    async def _on_undecodable(
        self, link: _Link, storage: str, stored: StoredPdu, exc: GsmError
    ) -> None:
        if not self._undecodable.first_time(storage, stored.index, stored.pdu):
            return
        self._health.undecodable += 1
        log.warning(
            "modem %s: %s index %d does not decode (%s): %s",
            self.name,
            storage,
            stored.index,
            exc,
            stored.pdu.hex().upper(),
        )
        if self.options.delete_undecodable:
            await self._delete_index(link, storage, stored.index)

    async def _take_direct(self, link: _Link, urc: Urc) -> None:
        """+CMT or +CDS: emit, then acknowledge with AT+CNMA (TS 27.005 section 3.4.4).

        With AT+CNMA in use, an event with no room is left unacknowledged: the modem refuses it
        to the network, which delivers it again later. Without, the modem has acknowledged it
        already, so this waits for room (backpressure; the lock is not held meanwhile). One
        that does not decode is refused the first time, acknowledged when the same octets come
        again (`UndecodableDirect`).
        """
        try:
            pdu = commands.parse_urc_pdu(urc.line, urc.pdu)
            smsc, tpdu = split_sca(pdu)
            decoded = parse_received(tpdu)
        except (AtProtocolError, GsmError) as exc:
            # The log line carries the PDU, so nothing is lost without a trace.
            first = self._undecodable_direct.first_time(urc)
            if first:
                self._health.undecodable += 1
            refused = first and link.cnma
            log.warning(
                "modem %s: %s does not decode (%s)%s: %s",
                self.name,
                urc.line,
                exc,
                "; left unacknowledged, for the network to deliver it again" if refused else "",
                urc.pdu,
            )
            if refused:
                link.indications_off.unacknowledged()
            elif link.cnma:
                async with self._lock:
                    await self._acknowledge_direct(link)
            return
        event = _event(self.name, "", None, smsc, tpdu, decoded)
        step = direct_step(buffered=self._emit_inbound(event), cnma=link.cnma)
        if step is DirectStep.WAIT_FOR_ROOM:
            await self._events_in.send(event)
            self._count_inbound(event)
        elif step is DirectStep.LEAVE_UNACKNOWLEDGED:
            log.warning("modem %s: no room for %s; the network will retry", self.name, urc.line)
            link.indications_off.unacknowledged()
        elif step is DirectStep.ACKNOWLEDGE:
            async with self._lock:
                await self._acknowledge_direct(link)

    async def _acknowledge_direct(self, link: _Link) -> None:
        reply = await self._command(link, commands.CNMA)
        if not reply.final.ok:
            # Too late (+CMS ERROR 340): the modem gave up waiting and turned indications off.
            log.warning("modem %s: AT+CNMA answered %s", self.name, reply.final.text)
            link.indications_off.unacknowledged()
            if (setting := link.indications_off.due(link.cnmi)) is not None:
                again = await self._command(link, setting.command)
                link.indications_off.set_again(ok=again.final.ok)

    async def _read_index(self, link: _Link, storage: str, index: int) -> StoredPdu | None:
        async with self._reading_from(link, storage):
            reply = await self._command(link, commands.cmgr(index))
        if reply.final.ok:
            return commands.parse_cmgr(reply.lines, index)
        if is_empty_index(reply.final):
            return None
        raise ModemUnavailable(f"AT+CMGR={index} answered {reply.final.text}")

    async def _delete_index(self, link: _Link, storage: str, index: int) -> None:
        async with self._reading_from(link, storage):
            reply = await self._command(link, commands.cmgd(index))
        if not reply.final.ok:
            raise ModemUnavailable(f"AT+CMGD={index} answered {reply.final.text}")

    def _reading_from(
        self, link: _Link, storage: str, *, may_refuse: bool = False
    ) -> _StorageSwitch:
        return _StorageSwitch(self, link, storage, may_refuse=may_refuse)

    def _emit_inbound(self, event: InboundSms | StatusReportReceived) -> bool:
        """Put an inbound event in the buffer unless that needs dropping another one."""
        if not self._put(event):
            log.info("modem %s: event buffer full, %s kept for later", self.name, _describe(event))
            return False
        self._count_inbound(event)
        return True

    def _count_inbound(self, event: InboundSms | StatusReportReceived) -> None:
        if isinstance(event, InboundSms):
            self._health.received += 1
        else:
            self._health.reports += 1

    # ---- initialisation --------------------------------------------------------------------

    async def _initialise(self, link: _Link) -> str:
        await self._synchronise(link)
        await self._expect_ok(link, commands.ECHO_OFF)
        echoes = link.framer.echoes
        await self._expect_ok(link, commands.CMEE_NUMERIC)
        await self._read_identity(link)
        await self._unlock_sim(link)
        if not self._health.iccid:
            # Some modems read the SIM only once it is unlocked.
            self._health.iccid = await self._read_iccid(link) or ""
        self._check_identity(link)
        # After the SIM: some modems refuse SMS commands until the SIM is ready.
        await self._expect_ok(link, commands.PDU_MODE)
        await self._choose_storage(link)
        await self._choose_indications(link)
        for optional in (commands.CREG_URC_ON, commands.CEREG_URC_ON, commands.COPS_LONG_NAME):
            await self._command(link, optional)
        detail = await self._poll_network(link)
        link.echo_off = link.framer.echoes == echoes
        if link.cnmi is None:
            detail += "; no new-message indications, sweeping only"
        return detail

    async def _reinitialise(self, link: _Link, why: str) -> None:
        """Initialise again on the open port: a modem that hung may have restarted."""
        self._health.recoveries += 1
        self._health.last_error = why
        try:
            with trio.move_on_after(self.options.init_timeout):
                self._health.detail = await self._initialise(link)
                self._queue(link, Sweep())
                return
        except _SimLocked as exc:
            self._sim_locked = True
            self._fail(link, str(exc))
        except AtProtocolError as exc:
            self._fail(link, f"re-initialisation failed: {exc}")
        self._fail(link, f"re-initialisation took longer than {self.options.init_timeout:g} s")

    async def _synchronise(self, link: _Link) -> None:
        """Bare "AT" until OK: the modem may be booting or still in a half-typed PDU."""
        if not await self._try_synchronise(link, first_escape=False):
            self._fail(link, f"no OK to AT after {self.options.sync_attempts} attempts")

    async def _try_synchronise(self, link: _Link, *, first_escape: bool) -> bool:
        for escape in escapes(self.options.sync_attempts, first=first_escape):
            if escape:
                await self._write(link, commands.ESC)
            reply = await self._exchange(link, commands.SYNC, self.options.sync_timeout)
            if reply is not None and reply.final.ok:
                return True
        return False

    async def _read_identity(self, link: _Link) -> None:
        for command, prefix, field in (
            (commands.CGMI, "+CGMI", "manufacturer"),
            (commands.CGMM, "+CGMM", "model"),
        ):
            reply = await self._command(link, command)
            if reply.final.ok:
                try:
                    setattr(self._health, field, commands.parse_text(reply.lines, prefix))
                except AtProtocolError:
                    log.info("modem %s: no answer text to %s", self.name, command)
        self._health.imei = await self._read_imei(link) or ""
        self._health.iccid = await self._read_iccid(link) or ""

    async def _read_imei(self, link: _Link) -> str | None:
        reply = await self._command(link, commands.CGSN)
        if not reply.final.ok:
            return None
        try:
            return commands.parse_imei(reply.lines)
        except AtProtocolError as exc:
            log.info("modem %s: %s", self.name, exc)
            return None

    async def _read_iccid(self, link: _Link) -> str | None:
        """AT+CCID, then the vendor spellings, then the SIM file itself (AT+CRSM)."""
        for command in commands.ICCID_COMMANDS:
            reply = await self._command(link, command)
            if not reply.final.ok:
                continue
            try:
                if command == commands.CRSM_ICCID:
                    return commands.parse_crsm_iccid(reply.lines)
                return commands.parse_iccid(reply.lines)
            except AtProtocolError as exc:
                log.info("modem %s: %s: %s", self.name, command, exc)
        return None

    def _check_identity(self, link: _Link) -> None:
        """A configured IMEI or ICCID that does not match means another modem is on this port."""
        locator = self._locator
        wrong = locator.identity.mismatch(self._health.imei, self._health.iccid)
        if wrong:
            locator.refuse(self._health.port or locator.last_path)
            self._fail(link, wrong)

    async def _choose_storage(self, link: _Link) -> None:
        """AT+CPMS: the first preferred storage usable for reading, writing and receiving."""
        supported = await self._command(link, commands.CPMS_TEST)
        chosen = None
        if supported.final.ok:
            try:
                choices = commands.parse_cpms_test(supported.lines)
                self._storages_seen.readable(choices[0])
                chosen = commands.choose_storage(choices, self.options.storage)
            except AtProtocolError as exc:
                log.info("modem %s: %s", self.name, exc)
        if chosen is not None:
            reply = await self._command(link, commands.cpms(chosen))
            if reply.final.ok:
                self._health.storage = storage_in_use(chosen, "", self.options.storage)
                return
        current = await self._command(link, commands.CPMS_QUERY)
        reported = ""
        if current.final.ok:
            try:
                reported = commands.parse_cpms_read(current.lines)
            except AtProtocolError as exc:
                log.info("modem %s: %s", self.name, exc)
        self._health.storage = storage_in_use(None, reported, self.options.storage)

    async def _choose_indications(self, link: _Link) -> None:
        """AT+CNMI: the first setting this modem accepts; AT+CSMS=1 when it is direct."""
        link.cnmi = None
        link.cnma = False
        choice = IndicationChoice(self.options.cnmi, csms_for_direct=self.options.csms_for_direct)
        for setting in choice.candidates:
            reply = await self._command(link, setting.command)
            if reply.final.ok:
                link.cnmi = setting
                break
        if choice.wants_csms(link.cnmi):
            reply = await self._command(link, commands.CSMS_PHASE2_PLUS)
            link.cnma = reply.final.ok

    async def _unlock_sim(self, link: _Link) -> None:
        """AT+CPIN? until READY, as `SimUnlock` decides (TS 27.007 section 8.3)."""
        policy = SimUnlock(self.options.pin)
        while True:
            reply = await self._command(link, commands.CPIN_QUERY)
            code = commands.parse_cpin(reply.lines) if reply.final.ok else sim_code(reply.final)
            self._health.sim = code
            decision = policy.next(code)
            if decision.step is SimStep.READY:
                return
            if decision.step is SimStep.LOCKED:
                raise _SimLocked(decision.reason)
            if decision.step is SimStep.WAIT:
                await trio.sleep(self.options.sim_poll_interval)
                continue
            try:
                answer = await self._command(link, decision.command)
            except _Unanswered:
                continue  # never typed twice: AT+CPIN? says whether it took
            refused = policy.pin_answered(answer.final)
            if refused is not None:
                raise _SimLocked(refused.reason)

    async def _poll_network(self, link: _Link) -> str:
        signal = self._read(await self._command(link, commands.CSQ), commands.parse_csq)
        if signal is not None:
            self.signal = signal
            self._health.rssi = None if signal.rssi == 99 else signal.rssi
            self._health.signal_dbm = signal.dbm
        registration = self._read(
            await self._command(link, commands.CREG_QUERY), commands.parse_creg
        )
        if registration is not None:
            self.registration = registration
        eps = self._read(await self._command(link, commands.CEREG_QUERY), commands.parse_cereg)
        if eps is not None:
            self.eps_registration = eps
        self._update_registration()
        operator = self._read(await self._command(link, commands.COPS_QUERY), commands.parse_cops)
        if operator is not None:
            self._health.operator = operator.name
        return network_detail(self._health.signal_dbm, self._health.registration)

    def _read(self, reply: Response, parse: Callable[[tuple[str, ...]], _Read]) -> _Read | None:
        """What `parse` reads in an OK answer; None when the modem refused, or when the answer
        is unreadable (noise dropped its line, or stands for a digit): that read of the poll
        is lost and the last one stays, since the next poll reads it again."""
        if not reply.final.ok:
            return None
        try:
            return parse(reply.lines)
        except AtProtocolError as exc:
            log.info("modem %s: unreadable answer: %s", self.name, exc)
            return None

    def _update_registration(self) -> None:
        name = registration_name(self.registration, self.eps_registration)
        if name is not None:
            self._health.registration = name
        best = best_registration(self.registration, self.eps_registration)
        if best is not None:
            self._registered_now(best.stat.registered)

    def _registered_now(self, registered: bool) -> None:
        """Tell the gateway when the modem became registered or stopped being so; an event
        that finds the buffer full of ones never dropped is told again at the next
        registration read."""
        if registered is self._registered:
            return
        told = self._put(RegistrationChanged(modem=self.name, registered=registered))
        self._registered = registered if told else None

    # ---- finding the port ------------------------------------------------------------------

    async def _open_serial_path(self, path: str) -> trio.abc.Stream:
        return await open_serial(path, baudrate=self.options.baudrate)

    async def _open_located(self) -> trio.abc.Stream:
        path, stream = await self._locator.open()
        self._health.port = path
        return stream

    async def _identify(self, stream: trio.abc.Stream) -> tuple[str, str]:
        """The probe of a scan: (IMEI, ICCID) of the modem on `stream`, as far as configured."""
        link = _Link(stream, self.options.max_line, probe=True)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._read_loop, link)
            try:
                await self._synchronise(link)
                await self._command(link, commands.ECHO_OFF)
                imei = await self._read_imei(link) if self.options.imei else None
                iccid = await self._read_iccid(link) if self.options.iccid else None
            except AtProtocolError as exc:
                raise ModemUnavailable(f"unreadable answer: {exc}") from exc
            nursery.cancel_scope.cancel()
        return imei or "", iccid or ""

    # ---- command plumbing ------------------------------------------------------------------

    async def _expect_ok(self, link: _Link, command: str) -> None:
        reply = await self._command(link, command)
        if not reply.final.ok:
            answered = f"{reply.final.kind.value} {reply.final.text}"
            self._fail(link, f"{commands.shown(command)} answered {answered}")

    async def _command(self, link: _Link, command: str) -> Response:
        """One command and its final result, climbing `CommandLadder` when it is lost: a
        resync and a retry (repeatable commands), a resync and `_Unanswered` (others), the
        re-initialisation of `_recover_in_place` (or, while initialising, a reopen)
        when the retries run out."""
        options = self.options
        ladder = CommandLadder(
            repeatable=is_repeatable(command),
            retries=options.command_retries,
            poll_interval=options.sim_poll_interval,
            not_ready_for=options.not_ready_timeout,
        )
        while True:
            reply = await self._exchange(link, command, options.query_timeout)
            if reply is not None:
                decision = ladder.answered(reply.final, trio.current_time())
                if decision.step is Step.ACCEPT:
                    return reply
                log.info(
                    "modem %s: %s: not ready (%s)",
                    self.name,
                    commands.shown(command),
                    reply.final.text,
                )
                await trio.sleep_until(decision.at)
                continue
            reason = f"no answer to {commands.shown(command)} within {options.query_timeout:g} s"
            decision = ladder.timed_out(serving=link.serving)
            if decision.step is Step.REOPEN:
                self._fail(link, f"{reason}, {ladder.silences} times")
            if decision.step is Step.REINITIALISE:
                await self._recover_in_place(link, f"{reason}, {ladder.silences} times")
            await self._resync(link, reason)
            if decision.step is Step.RESYNC_AND_REPORT:
                raise _Unanswered(f"modem {self.name}: {reason}; resynchronised")

    async def _resync(self, link: _Link, reason: str) -> None:
        """A lost answer: a command whose answer carries a fresh nonce (`commands.resync`),
        until that answer comes, puts the modem and the framer in step again, also when the
        lost answer was only late; when no answer comes the link is given up (and the port
        reopened by `run`)."""
        self._health.resyncs += 1
        log.info("modem %s: %s; resynchronising", self.name, reason)
        tries = escapes(self.options.sync_attempts, first=False)
        for escape in tries:
            if escape:
                await self._write(link, commands.ESC)
            nonce = self._nonces.next()
            reply = await self._exchange(link, commands.resync(nonce), self.options.sync_timeout)
            if reply is None:
                continue
            if resync_answered(reply.lines, reply.final, nonce):
                return
            log.info("modem %s: a late answer taken off the line: %s", self.name, _outline(reply))
        self._fail(link, f"{reason}; no answer to the resync after {len(tries)} attempts")

    async def _recover_in_place(self, link: _Link, reason: str) -> NoReturn:
        """Synchronise and re-initialise on the open port; only when that fails is the link
        given up (and the port reopened by `run`)."""
        log.warning("modem %s: %s; resynchronising", self.name, reason)
        link.serving = False
        if not await self._try_synchronise(link, first_escape=True):
            self._fail(link, f"{reason}; no OK to AT after {self.options.sync_attempts} attempts")
        await self._reinitialise(link, reason)
        link.serving = True
        raise ModemUnavailable(f"modem {self.name}: {reason}; resynchronised")

    async def _exchange(self, link: _Link, command: str, within: float) -> Response | None:
        """Write one command line and wait for its final result; None when `within` s passed."""
        self._drain(link)
        line = link.framer.send_command(command)
        with trio.move_on_after(within):
            await self._write_bytes(link, line)
        reply = await self._await_answer(link, within)
        if isinstance(reply, Prompt):
            self._fail(link, f"a '> ' prompt answered {commands.shown(command)}")
        return reply

    async def _await_answer(self, link: _Link, within: float) -> Response | Prompt | None:
        """The pending command's answer; None when `within` s passed, or sooner when its
        information text came and then nothing for `final_grace` s: a modem writes the final
        result code right after the text, so it was lost on the way."""
        wait = AnswerWait(trio.current_time(), within=within, grace=self.options.final_grace)
        while (look_again := wait.look(len(link.framer.partial), trio.current_time())) is not None:
            with trio.move_on_at(look_again) as link.answer_wait:
                try:
                    return await self._reply(link)
                finally:
                    link.answer_wait = None
        return None

    def _drain(self, link: _Link) -> None:
        """Drop late answers to commands given up on, so they are not taken for the next."""
        while True:
            try:
                stale = link.replies_out.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel):
                return
            log.info("modem %s: late answer dropped: %s", self.name, _outline(stale))

    async def _write(self, link: _Link, text: str) -> None:
        await self._write_bytes(link, text.encode("ascii"))

    async def _write_bytes(self, link: _Link, data: bytes) -> None:
        try:
            await link.stream.send_all(data)
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

    def _emit(self, event: HealthChanged) -> None:
        """Never blocks: when the buffer is full the oldest HealthChanged makes room."""
        if not self._put(event):
            self._health.events_dropped += 1
            log.info("modem %s: event dropped: %r", self.name, event)

    def _put(self, event: ModemEvent) -> bool:
        """Buffer `event`, dropping the oldest HealthChanged if there is no room; False when
        there was none to drop. Inbound and registration events are never dropped once
        buffered."""
        try:
            self._events_in.send_nowait(event)
        except trio.BrokenResourceError:
            return False
        except trio.WouldBlock:
            return self._make_room_for(event)
        return True

    def _make_room_for(self, event: ModemEvent) -> bool:
        """The buffer is full: apply `make_room`; False when it would drop nothing (then
        nothing changes)."""
        queued: list[ModemEvent] = []
        while True:
            try:
                queued.append(self._events_out.receive_nowait())
            except (trio.WouldBlock, trio.EndOfChannel):
                break
        roomier = make_room(queued, event)
        if roomier is not None:
            self._health.events_dropped += 1
        for kept in queued if roomier is None else roomier:
            self._events_in.send_nowait(kept)
        return roomier is not None


class _StorageSwitch:
    """Point <mem1> at `storage` for one read or delete, and back (status reports may be in
    "SR" while messages are in "SM"; AT+CMGR/AT+CMGD act on <mem1>, TS 27.005 3.2.2)."""

    def __init__(self, modem: AtModem, link: _Link, storage: str, *, may_refuse: bool) -> None:
        self._modem = modem
        self._link = link
        self._storage = storage
        self._may_refuse = may_refuse  # a refusal leaves <mem1> as it was, else fails the link
        self._switched = False

    async def __aenter__(self) -> bool:
        """True once <mem1> is `storage`; False when the modem refused it (`may_refuse`)."""
        if not needs_switch(self._storage, self._modem._health.storage):
            return True
        command = commands.cpms_read_from(self._storage)
        if self._may_refuse:
            reply = await self._modem._command(self._link, command)
            if not reply.final.ok:
                return False
        else:
            await self._modem._expect_ok(self._link, command)
        self._switched = True
        return True

    async def __aexit__(self, *exc_info: object) -> None:
        if self._switched and not self._link.failed.is_set():
            await self._modem._expect_ok(
                self._link, commands.cpms_read_from(self._modem._health.storage)
            )


def _rejection(outcome: Refused) -> SendRejected:
    return SendRejected(outcome.reason, cms=outcome.cms, permanent=outcome.permanent)


def _event(
    modem: str,
    storage: str,
    index: int | None,
    smsc: str,
    tpdu: bytes,
    decoded: SmsDeliver | SmsStatusReport,
) -> InboundSms | StatusReportReceived:
    if isinstance(decoded, SmsDeliver):
        return InboundSms(
            modem=modem, storage=storage, index=index, smsc=smsc, pdu=tpdu, deliver=decoded
        )
    return StatusReportReceived(
        modem=modem, storage=storage, index=index, smsc=smsc, pdu=tpdu, report=decoded
    )


def _named(indication: Indication) -> str:
    """An indication as a log line names it: a direct one by its +CMT or +CDS line, without
    the PDU that follows it, which holds the message's text."""
    return indication.urc.line if isinstance(indication, Direct) else repr(indication)


def _outline(reply: Response | Prompt) -> str:
    """A late answer as a log line names it: its line prefixes (`+CMGR`) and final result,
    not its text, whose unprefixed lines may be PDUs (a message's text and numbers, from a
    late AT+CMGR or AT+CMGL) and whose prefixed ones may list a stored message's sender."""
    if isinstance(reply, Prompt):
        return "a '> ' prompt"
    names = [line.partition(":")[0] for line in reply.lines if line.startswith("+")]
    others = len(reply.lines) - len(names)
    shown = [*names, f"{others} other line{'s' * (others != 1)}"] if others else names
    return ", ".join([*shown, reply.final.kind.value])


def _describe(event: InboundSms | StatusReportReceived) -> str:
    where = "direct" if event.index is None else f"{event.storage} index {event.index}"
    kind = "SMS" if isinstance(event, InboundSms) else "status report"
    return f"{kind} ({where})"
