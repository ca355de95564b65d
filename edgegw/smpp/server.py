"""The SMPP 3.4 listener: a thin trio shell that moves bytes between each ESME connection and the
codec (`pdu.py`) and session table (`session.py`), and calls the core through `SmppBackend`.

It owns the sockets, timers, TLS and error boundaries and never parses a field itself. Spec section
2.7; SMPP 3.4 sections 2.2-2.9 (sessions), 4 (PDUs) and 7.2 (timers).
"""

from __future__ import annotations

import collections
import datetime as dt
import functools
import logging
import math
import ssl
from collections.abc import Awaitable, Callable
from typing import TypeVarTuple

import trio

from drivers.gsm import GsmError
from edgegw.clock import Clock
from edgegw.logins import admit, login_failed
from edgegw.loglimit import LogLimiter, log_limited, log_refused, write_overdue_summaries
from edgegw.shares import ConnectionShares, Refusal
from edgegw.smpp.backend import (
    Accepted,
    Account,
    BindMode,
    BindRefused,
    SmppBackend,
    SubmitRefused,
)
from edgegw.smpp.config import SmppConfig
from edgegw.smpp.constants import (
    INTERFACE_VERSION_34,
    RESPONSE_BIT,
    CommandId,
    CommandStatus,
    Tag,
)
from edgegw.smpp.errors import BrokenFrame, EncodeError, InvalidField, InvalidPdu
from edgegw.smpp.outbound import Outbound, deliver_sms
from edgegw.smpp.pdu import (
    NEED_DATA,
    BindReceiverResp,
    BindTransceiverResp,
    BindTransmitterResp,
    CancelSm,
    EnquireLink,
    EnquireLinkResp,
    GenericNack,
    Pdu,
    QuerySm,
    QuerySmResp,
    ReplaceSm,
    SmppDecoder,
    SubmitMulti,
    SubmitMultiResp,
    SubmitSm,
    SubmitSmResp,
    Unbind,
    UnbindResp,
    UnsuccessfulDelivery,
    encode,
    response_class,
)
from edgegw.smpp.session import Action, Outcome, Session, Timers
from edgegw.smpp.submission import (
    Submission,
    format_time,
    submission_from_submit_multi,
    submission_from_submit_sm,
)
from edgegw.smpp.tlv import int_tlv
from edgegw.throttle import AuthThrottle
from edgegw.tls import server_context

__all__ = ["serve_smpp"]

log = logging.getLogger(__name__)

Ts = TypeVarTuple("Ts")

_S = CommandStatus
_DOOR = "smpp"  # the door's name in the failed-login counters
_RECEIVE_BYTES = 65536
_BIND_RESPONSES: dict[int, type[BindTransmitterResp | BindReceiverResp | BindTransceiverResp]] = {
    CommandId.BIND_TRANSMITTER: BindTransmitterResp,
    CommandId.BIND_RECEIVER: BindReceiverResp,
    CommandId.BIND_TRANSCEIVER: BindTransceiverResp,
}
_BIND_MODES = {
    CommandId.BIND_TRANSMITTER: BindMode.TRANSMITTER,
    CommandId.BIND_RECEIVER: BindMode.RECEIVER,
    CommandId.BIND_TRANSCEIVER: BindMode.TRANSCEIVER,
}


class _Server:
    """What the sessions share: bind counts, outbox items in flight, the drain signal."""

    def __init__(
        self,
        config: SmppConfig,
        backend: SmppBackend,
        clock: Clock,
        throttle: AuthThrottle,
        binds: collections.Counter[str] | None = None,
        refused: collections.Counter[str] | None = None,
    ) -> None:
        self.config = config
        self.backend = backend
        self.clock = clock
        self.throttle = throttle
        self.limiter = LogLimiter()
        self.shares = ConnectionShares(
            config.max_connections,
            config.max_connections_per_address,
            exempt_loopback=config.exempt_loopback,
            door="smpp",
            refused=refused,
        )
        self.timers = Timers(
            enquire_link_interval=config.enquire_link_interval,
            response_timeout=config.response_timeout,
            inactivity_timeout=config.inactivity_timeout,
            bind_timeout=config.bind_timeout,
        )
        self.connections: set[_Connection] = set()
        # Bound sessions per system_id; the caller may pass its own to watch them (metrics).
        self.binds: collections.Counter[str] = collections.Counter() if binds is None else binds
        # Outbox ids with a deliver_sm on some session, and ids to hold back until a time.
        self.in_flight: set[int] = set()
        self.hold_until: dict[int, float] = {}
        self.draining = trio.Event()
        self.drain_deadline = math.inf

    def held(self, now: float) -> frozenset[int]:
        for outbound_id in [i for i, until in self.hold_until.items() if until <= now]:
            del self.hold_until[outbound_id]
        return frozenset(self.in_flight | self.hold_until.keys())

    def next_release(self) -> float:
        """When the first held item may be offered again (inf when none is held)."""
        return min(self.hold_until.values(), default=math.inf)

    def hold(self, outbound_id: int, now: float) -> None:
        self.in_flight.discard(outbound_id)
        self.hold_until[outbound_id] = now + self.config.redeliver_interval

    def begin_drain(self) -> None:
        self.drain_deadline = trio.current_time() + self.config.drain_timeout
        self.draining.set()
        for connection in self.connections:
            connection.scope.deadline = self.drain_deadline

    def log(
        self,
        level: int,
        kind: str,
        peer: str | None,
        message: str,
        *args: object,
        exc_info: bool = False,
        system_id: str | None = None,
        stacklevel: int = 3,
    ) -> None:
        """A record about what a peer did, at most once a minute per kind and peer. It ends
        naming the peer, and the account when the session is bound: with many ESMEs, a line
        that says only what happened says nothing. `stacklevel` 3 names the caller."""
        now = trio.current_time()
        if system_id is None:
            message, args = f"{message} (peer %s)", (*args, peer)
        else:
            message, args = f"{message} (peer %s, system_id %r)", (*args, peer, system_id)
        log_limited(
            log,
            self.limiter,
            level,
            kind,
            peer,
            now,
            message,
            *args,
            exc_info=exc_info,
            stacklevel=stacklevel,
        )

    async def handle(self, stream: trio.abc.Stream) -> None:
        """One connection under its own error boundary, shielded so a shutdown can unbind it
        within the drain deadline rather than cut it."""
        address = _peer_address(stream)
        open_now = len(self.connections)
        # While draining no new session may start: the listener is as good as full.
        refusal = Refusal.FULL if self.draining.is_set() else self.shares.admit(address, open_now)
        if refusal is not None:
            log_refused(log, self.limiter, self.shares, address, refusal, open_now)
            await trio.aclose_forcefully(stream)
            return
        connection = _Connection(self, stream, address)
        self.connections.add(connection)
        try:
            with connection.scope:
                await connection.run()
        except Exception:
            connection.log(logging.ERROR, "failed", "SMPP session failed", exc_info=True)
        finally:
            self.connections.discard(connection)
            self.shares.give_back(address)
            connection.release()
            await trio.aclose_forcefully(stream)


class _Connection:
    def __init__(self, server: _Server, stream: trio.abc.Stream, address: str | None) -> None:
        config = server.config
        self.server = server
        self.address = address
        self.backend = server.backend
        self.stream = stream
        self.session = Session(
            server.timers,
            window=config.window,
            max_pending_submits=config.max_pending_submits,
            now=trio.current_time(),
        )
        self.decoder = SmppDecoder(config.max_pdu_bytes)
        self.account: Account | None = None
        self.scope = trio.CancelScope(shield=True)
        self.read_scope = trio.CancelScope()
        self.outgoing, self.outgoing_reader = trio.open_memory_channel[bytes](
            config.window + config.max_pending_submits + 16
        )
        self.writer_done = trio.Event()
        self.window_opened = trio.Event()
        self.timers_changed = trio.Event()
        self.submit_done = trio.Event()
        self.workers: trio.Nursery | None = None
        # submit_sm of the current read, with their sequence numbers: stored in one write job
        # and answered in one write by one task (`_commit_burst`), not a task per PDU.
        self.burst: list[tuple[int, Submission]] = []
        # Wall time as the submits of one read see it (`_utc_now`).
        self.read_time: dt.datetime | None = None

    # -- lifetime ---------------------------------------------------------------------------

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._write_loop)
            async with trio.open_nursery() as workers:
                self.workers = workers
                workers.start_soon(self._timer_loop)
                workers.start_soon(self._drain_watch)
                with self.read_scope:
                    await self._read_loop()
                # Requests read before the end (a broken frame, the peer's end of stream, a
                # timer) are stored and answered, not cut off half-way through the store.
                self._flush_burst()
                await self._settle_submits()
                workers.cancel_scope.cancel()
            self.session.close()
            self.outgoing.close()
            with trio.move_on_after(self.server.config.response_timeout):
                await self.writer_done.wait()
            nursery.cancel_scope.cancel()

    def close(self, reason: str) -> None:
        self.log(logging.INFO, reason, "SMPP session closing: %s", reason)
        self.read_scope.cancel()

    def abort(self, reason: str) -> None:
        """End the session now, without the orderly close that needs the peer to read."""
        self.log(logging.INFO, reason, "SMPP session aborted: %s", reason)
        self.scope.cancel()

    def log(
        self,
        level: int,
        kind: str,
        message: str,
        *args: object,
        exc_info: bool = False,
        stacklevel: int = 2,
    ) -> None:
        """A record about what happened in this session (`_Server.log`), naming the bound
        account's system_id once there is one; `stacklevel` 2 names the caller's line."""
        self.server.log(
            level,
            kind,
            self.address,
            message,
            *args,
            exc_info=exc_info,
            system_id=None if self.account is None else self.account.system_id,
            stacklevel=stacklevel + 2,
        )

    def release(self) -> None:
        """Give back what the session held: its bind slot and its outbox items, which stay
        pending in the backend for the next bind."""
        if self.account is not None:
            self.server.binds[self.account.system_id] -= 1
            self.account = None
        self.server.in_flight -= self.session.deliveries_in_flight

    def _spawn(self, task: Callable[[*Ts], Awaitable[object]], *args: *Ts) -> None:
        if self.workers is None:
            raise RuntimeError("the session has no worker nursery")
        self.workers.start_soon(task, *args)

    # -- bytes ------------------------------------------------------------------------------

    async def send(self, pdu: Pdu) -> None:
        await self.outgoing.send(encode(pdu))

    async def _write_loop(self) -> None:
        reader = self.outgoing_reader
        try:
            while True:
                try:
                    first = await reader.receive()
                except trio.EndOfChannel:
                    return
                chunks = [first]
                while True:
                    try:
                        chunks.append(reader.receive_nowait())
                    except (trio.WouldBlock, trio.EndOfChannel):
                        break
                # One write for everything queued: responses to pipelined submits coalesce.
                # A peer that does not take them within the response time is as gone as one
                # that does not answer (SMPP 3.4 7.2): the session ends and frees its slot.
                with trio.move_on_after(self.server.config.response_timeout) as deadline:
                    await self.stream.send_all(first if len(chunks) == 1 else b"".join(chunks))
                if deadline.cancelled_caught:
                    self.abort("the peer did not read within the response timeout")
                    return
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self.close("the peer stopped reading")
        finally:
            self.writer_done.set()

    async def _read_loop(self) -> None:
        session, decoder = self.session, self.decoder
        while True:
            try:
                data = await self.stream.receive_some(_RECEIVE_BYTES)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return
            decoder.receive_data(data)
            self.read_time = None
            while True:
                try:
                    pdu = decoder.next_pdu()
                except BrokenFrame as exc:
                    self.log(logging.INFO, "broken", "SMPP frame broken: %s", exc)
                    # The well-framed submits before it get their answers first.
                    self._flush_burst()
                    await self._settle_submits()
                    await self.send(GenericNack(**_nack(exc)))
                    return
                except InvalidPdu as exc:
                    session.heard(trio.current_time())
                    self._log_unreadable(exc)
                    if not exc.command_id & RESPONSE_BIT:
                        # A response is never answered, not even a garbled one (SMPP 3.4
                        # 4.3.1: generic_nack answers a request): two peers nacking each
                        # other's nacks would never stop. What it acknowledged times out.
                        await self.send(GenericNack(**_nack(exc)))
                    self.read_time = None
                    continue
                except InvalidField as exc:
                    self._log_unreadable(exc)
                    await self._answer_invalid(exc)
                    self.read_time = None
                    continue
                if pdu is NEED_DATA:
                    break
                if not await self._on_pdu(pdu):
                    return
            self._flush_burst()
            if not data:
                return

    def _log_unreadable(self, exc: InvalidPdu | InvalidField) -> None:
        self.log(
            logging.INFO,
            "unreadable",
            "SMPP PDU %#010x (sequence %d) refused: %s",
            exc.command_id,
            exc.sequence_number,
            exc,
            stacklevel=3,  # the read loop's line
        )

    async def _answer_invalid(self, exc: InvalidField) -> None:
        step = self.session.receive(exc.command_id, trio.current_time())
        if step.action is Action.IGNORE or exc.command_id & RESPONSE_BIT:
            # A garbled response is never answered; what it acknowledged times out and is
            # offered again.
            return
        status = step.status if step.action is Action.REJECT else exc.command_status
        await self._answer(exc.command_id, exc.sequence_number, status)

    async def _answer(self, command_id: int, sequence_number: int, status: int) -> None:
        cls = response_class(command_id) or GenericNack
        await self.send(cls(sequence_number=sequence_number, command_status=status))

    # -- PDUs -------------------------------------------------------------------------------

    async def _on_pdu(self, pdu: Pdu) -> bool:
        """Act on one PDU; False when the session ends."""
        step = self.session.receive(pdu.command_id, trio.current_time())
        action = step.action
        if action is Action.SUBMIT:
            assert isinstance(pdu, SubmitSm)
            refusal = self._submit(pdu)
            if refusal is not None:
                await self.send(refusal)
            return True
        self._flush_burst()  # what came before this PDU goes to the store before it acts
        self.read_time = None  # acting on it may wait
        if action is Action.DELIVER_ANSWERED:
            await self._deliver_answered(pdu.sequence_number, pdu.command_status)
        elif action is Action.ENQUIRE_LINK:
            await self.send(EnquireLinkResp(sequence_number=pdu.sequence_number))
        elif action is Action.LINK_ANSWERED:
            self.session.link_answered(pdu.sequence_number)
            self.timers_changed.set()
        elif action is Action.NACKED:
            if not self.session.link_answered(pdu.sequence_number):
                status = pdu.command_status or _S.ESME_RUNKNOWNERR
                await self._deliver_answered(pdu.sequence_number, status)
        elif action is Action.BIND:
            await self._bind(pdu)
        elif action is Action.SUBMIT_MULTI:
            assert isinstance(pdu, SubmitMulti)
            await self._submit_multi(pdu)
        elif action is Action.QUERY:
            assert isinstance(pdu, QuerySm)
            await self._query(pdu)
        elif action is Action.CANCEL or action is Action.REPLACE:
            assert isinstance(pdu, CancelSm | ReplaceSm)
            await self._cancel_or_replace(pdu)
        elif action is Action.NOT_SUPPORTED:
            await self._answer(pdu.command_id, pdu.sequence_number, _S.ESME_RINVCMDID)
        elif action is Action.REJECT:
            await self._answer(pdu.command_id, pdu.sequence_number, step.status)
        elif action is Action.UNBIND:
            await self._settle_submits()
            await self.send(UnbindResp(sequence_number=pdu.sequence_number))
            return False
        elif action is Action.UNBIND_DONE:
            return False
        return True

    async def _bind(self, pdu: Pdu) -> None:
        cls = _BIND_RESPONSES[pdu.command_id]
        seq = pdu.sequence_number
        throttle, address = self.server.throttle, self.address
        if await admit(throttle, _DOOR, address):
            await self.send(cls(sequence_number=seq, command_status=_S.ESME_RBINDFAIL))
            return
        system_id = getattr(pdu, "system_id", "")
        try:
            account = await self.backend.authenticate(
                system_id, getattr(pdu, "password", ""), _BIND_MODES[CommandId(pdu.command_id)]
            )
        except BindRefused as exc:
            await login_failed(throttle, _DOOR, "SMPP", address, system_id, log, str(exc))
            # The same answer for an unknown system_id and a wrong password: accounts cannot
            # be enumerated.
            await self.send(cls(sequence_number=seq, command_status=_S.ESME_RINVPASWD))
            return
        except Exception:
            self.log(logging.ERROR, "authenticate", "SMPP authentication failed", exc_info=True)
            await self.send(cls(sequence_number=seq, command_status=_S.ESME_RSYSERR))
            return
        server = self.server
        if server.draining.is_set() or server.binds[account.system_id] >= account.max_binds:
            await self.send(cls(sequence_number=seq, command_status=_S.ESME_RBINDFAIL))
            return
        server.binds[account.system_id] += 1
        self.account = account
        self.session.bound(pdu.command_id)
        self.timers_changed.set()
        await self.send(
            cls(
                sequence_number=seq,
                system_id=server.config.system_id,
                tlvs=(int_tlv(Tag.SC_INTERFACE_VERSION, INTERFACE_VERSION_34),),
            )
        )
        if self.session.can_receive:
            self._spawn(self._pump, account)

    def _utc_now(self) -> dt.datetime:
        """Wall time, read once for the submits of one read (a few milliseconds at most
        apart) and again after a PDU whose handling may have waited."""
        if self.read_time is None:
            self.read_time = dt.datetime.fromtimestamp(self.server.clock.now(), dt.UTC)
        return self.read_time

    def _submit(self, pdu: SubmitSm) -> SubmitSmResp | None:
        """Add a submit_sm to the read's burst, or the response that refuses it."""
        seq = pdu.sequence_number
        try:
            submission = submission_from_submit_sm(pdu, self._utc_now())
        except InvalidField as exc:
            return SubmitSmResp(sequence_number=seq, command_status=exc.command_status)
        if not self.session.submit_started():
            return SubmitSmResp(sequence_number=seq, command_status=_S.ESME_RTHROTTLED)
        self.burst.append((seq, submission))
        return None

    def _flush_burst(self) -> None:
        if self.burst:
            burst, self.burst = self.burst, []
            self._spawn(self._commit_burst, burst)

    async def _commit_burst(self, burst: list[tuple[int, Submission]]) -> None:
        """The submit_sm of one read awaiting the store together; answered in one write once
        committed. Several bursts run at once, so responses may go out of order, which SMPP
        3.4 section 2.6 allows."""
        account = self.account
        results: list[Accepted | SubmitRefused]
        try:
            if account is None:
                raise RuntimeError("submit without a bound account")
            results = await self.backend.submit_many(account, [item for _, item in burst])
        except Exception:
            self.log(
                logging.ERROR,
                "submit",
                "SMPP submit of %d messages failed",
                len(burst),
                exc_info=True,
            )
            results = [SubmitRefused(_S.ESME_RSYSERR, "system error")] * len(burst)
        finally:
            for _ in burst:
                self.session.submit_finished()
            self.submit_done.set()
        answers = []
        for (seq, _), result in zip(burst, results, strict=True):
            if isinstance(result, SubmitRefused):
                resp = SubmitSmResp(sequence_number=seq, command_status=result.command_status)
            else:
                resp = SubmitSmResp(sequence_number=seq, message_id=result.message_id)
            answers.append(encode(resp))
        await self.outgoing.send(b"".join(answers))

    async def _submit_multi(self, pdu: SubmitMulti) -> None:
        seq = pdu.sequence_number
        try:
            submission, refused = submission_from_submit_multi(pdu, self._utc_now())
        except InvalidField as exc:
            await self.send(SubmitMultiResp(sequence_number=seq, command_status=exc.command_status))
            return
        if not self.session.submit_started():
            await self.send(SubmitMultiResp(sequence_number=seq, command_status=_S.ESME_RTHROTTLED))
            return
        self._spawn(self._commit_multi, seq, submission, refused)

    async def _commit_multi(
        self, seq: int, submission: Submission, refused: tuple[UnsuccessfulDelivery, ...]
    ) -> None:
        """One submit_multi awaiting the store; several run at once, so responses may go out
        of order, which SMPP 3.4 section 2.6 allows."""
        account = self.account
        message_id, status = "", _S.ESME_ROK
        try:
            if account is None:
                raise RuntimeError("submit without a bound account")
            (result,) = await self.backend.submit_many(account, [submission])
            if isinstance(result, SubmitRefused):
                raise result
            message_id, refused = result.message_id, refused + result.refused
        except SubmitRefused as exc:
            status = exc.command_status
        except Exception:
            self.log(logging.ERROR, "submit", "SMPP submit failed", exc_info=True)
            status = _S.ESME_RSYSERR
        finally:
            self.session.submit_finished()
            self.submit_done.set()
        await self.send(
            SubmitMultiResp(
                sequence_number=seq,
                command_status=status,
                message_id=message_id,
                unsuccess_smes=refused,
            )
        )

    async def _settle_submits(self) -> None:
        """Let submits already with the store get their responses (bounded by the response
        timeout): their messages may be committed, and the ESME must learn their ids."""
        with trio.move_on_after(self.server.config.response_timeout):
            while self.session.pending_submits:
                self.submit_done = trio.Event()
                await self.submit_done.wait()

    async def _query(self, pdu: QuerySm) -> None:
        seq = pdu.sequence_number
        assert self.account is not None
        try:
            result = await self.backend.query(self.account, pdu.message_id)
        except Exception:
            self.log(logging.ERROR, "query", "SMPP query_sm failed", exc_info=True)
            await self.send(QuerySmResp(sequence_number=seq, command_status=_S.ESME_RSYSERR))
            return
        if result is None:
            await self.send(QuerySmResp(sequence_number=seq, command_status=_S.ESME_RINVMSGID))
            return
        await self.send(
            QuerySmResp(
                sequence_number=seq,
                message_id=pdu.message_id,
                final_date="" if result.final_date is None else format_time(result.final_date),
                message_state=result.message_state,
                error_code=result.error_code,
            )
        )

    async def _cancel_or_replace(self, pdu: CancelSm | ReplaceSm) -> None:
        """cancel_sm and replace_sm: the backend answers the status, their response's only
        content."""
        assert self.account is not None
        if isinstance(pdu, CancelSm):
            # A cancel by source and destination may name messages of submit_sm sent right
            # before it, their responses not awaited (SMPP 3.4 2.6): those reach the store first.
            await self._settle_submits()
        try:
            if isinstance(pdu, CancelSm):
                status = await self.backend.cancel(self.account, pdu)
            else:
                status = await self.backend.replace(self.account, pdu)
        except Exception:
            name = CommandId(pdu.command_id).name.lower()
            self.log(logging.ERROR, name, "SMPP %s failed", name, exc_info=True)
            status = _S.ESME_RSYSERR
        await self._answer(pdu.command_id, pdu.sequence_number, status)

    # -- outbox -----------------------------------------------------------------------------

    async def _pump(self, account: Account) -> None:
        """Offer the service's pending receipts and MO as deliver_sm, within the window."""
        session, server = self.session, self.server
        service = account.service_id
        while session.can_receive:
            if not session.window_free:
                self.window_opened = trio.Event()
                await self.window_opened.wait()
                continue
            signal = self.backend.outbound_signal(service)
            limit = session.window_free
            try:
                items = await self.backend.pending(service, limit, server.held(trio.current_time()))
            except Exception:
                self.log(logging.ERROR, "outbox", "SMPP outbox read failed", exc_info=True)
                items = []
            for item in items:
                await self._offer(item)
            if len(items) < limit:
                # Wake for new items, or when an item held back after a refusal or a timeout
                # may go again: it waits `redeliver_interval`, not that plus this idle wait.
                idle_until = trio.current_time() + server.config.redeliver_interval
                with trio.move_on_at(min(idle_until, server.next_release())):
                    await signal.wait()

    async def _offer(self, item: Outbound) -> None:
        session = self.session
        try:
            pdus = deliver_sms(item)
        except GsmError:
            await self._give_up(item)
            return
        # The parts go together once the window has room for all of them, or is empty: an MO
        # of more parts than the window could never go otherwise.
        while len(pdus) > session.window_free < session.window:
            self.window_opened = trio.Event()
            await self.window_opened.wait()
        # Checked after the last await: another session of the service may have taken it.
        if item.id in self.server.in_flight or not session.can_receive:
            return
        # Stamped now, not before the wait: the response timer runs from when the parts go.
        sequences = session.deliver_sent(item.id, len(pdus), trio.current_time())
        self.server.in_flight.add(item.id)
        self.timers_changed.set()
        try:
            frames = []
            for pdu, sequence in zip(pdus, sequences, strict=True):
                pdu.sequence_number = sequence
                frames.append(encode(pdu))
        except EncodeError:
            session.deliver_answered(sequences[0], _S.ESME_RSYSERR)
            self.server.in_flight.discard(item.id)
            await self._give_up(item)
            return
        for frame in frames:
            await self.outgoing.send(frame)

    async def _give_up(self, item: Outbound) -> None:
        """An item that can never be a deliver_sm (while handling the error that says why):
        logged, and settled for good rather than offered every redeliver_interval."""
        self.log(
            logging.ERROR,
            "encode",
            "SMPP outbox item %d cannot be encoded",
            item.id,
            exc_info=True,
            stacklevel=3,  # the line in _offer that found it
        )
        await self.backend.failed(item.id, _S.ESME_RSYSERR, for_good=True)

    async def _deliver_answered(self, sequence_number: int, status: int) -> None:
        """Settle an outbox item with the backend before reading on: a session that ends
        right after its last deliver_sm_resp must not lose the acknowledgement."""
        found = self.session.deliver_answered(sequence_number, status)
        self.window_opened.set()
        if found is None:
            return
        outbound_id, outcome = found
        if outcome is Outcome.PARTIAL:
            return
        try:
            if outcome is Outcome.DELIVERED:
                await self.backend.delivered(outbound_id)
            else:
                await self.backend.failed(outbound_id, status)
        except Exception:
            self.log(
                logging.ERROR,
                "settle",
                "SMPP outbox item %d could not be settled",
                outbound_id,
                exc_info=True,
            )
        if outcome is Outcome.DELIVERED:
            # Held as in flight until now so that no other session offers it meanwhile.
            self.server.in_flight.discard(outbound_id)
        else:
            self.server.hold(outbound_id, trio.current_time())

    # -- timers and shutdown ----------------------------------------------------------------

    async def _timer_loop(self) -> None:
        session, server = self.session, self.server
        while True:
            self.timers_changed = trio.Event()
            with trio.move_on_at(session.next_deadline()):
                await self.timers_changed.wait()
            now = trio.current_time()
            tick = session.tick(now)
            for outbound_id in tick.expired:
                server.hold(outbound_id, now)
                self.window_opened.set()
            if tick.close:
                self.close(tick.close)
                return
            if tick.send_enquire_link:
                sequence = session.next_sequence()
                session.enquire_link_sent(sequence, now)
                # Queued by its own task: the timers never wait behind a peer that stops
                # reading (the writer's deadline ends such a session).
                self._spawn(self.send, EnquireLink(sequence_number=sequence))

    async def _drain_watch(self) -> None:
        await self.server.draining.wait()
        if not self.session.is_bound:
            self.close("shutting down")
            return
        self.session.unbind_sent(trio.current_time())
        await self._settle_submits()
        self.timers_changed.set()
        await self.send(Unbind(sequence_number=self.session.next_sequence()))


def _peer_address(stream: trio.abc.Stream) -> str | None:
    """The client's IP address, through TLS if need be; None when the stream has none."""
    while isinstance(stream, trio.SSLStream):
        stream = stream.transport_stream
    if not isinstance(stream, trio.SocketStream):
        return None
    try:
        return str(stream.socket.getpeername()[0])
    except OSError:
        return None


def _nack(exc: BrokenFrame | InvalidPdu) -> dict[str, int]:
    return {"sequence_number": exc.sequence_number, "command_status": exc.command_status}


def _tls_context(config: SmppConfig) -> ssl.SSLContext | None:
    if not (config.tls_cert_file or config.tls_key_file):
        return None
    if not (config.tls_cert_file and config.tls_key_file):
        raise ValueError("smpp TLS needs both tls_cert_file and tls_key_file")
    return server_context(config.tls_cert_file, config.tls_key_file)


async def serve_smpp(
    config: SmppConfig,
    backend: SmppBackend,
    *,
    clock: Clock | None = None,
    throttle: AuthThrottle | None = None,
    binds: collections.Counter[str] | None = None,
    refused: collections.Counter[str] | None = None,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Listen for ESMEs until cancelled; `task_status.started(port)` reports the bound port.
    On cancellation bound sessions get an unbind and up to `drain_timeout` to answer it.
    Failed binds are slowed and locked out by `throttle` (one of default policy if None).
    `binds`, when given, is kept up to date with the bound sessions per system_id, and
    `refused` counts refused connections under "smpp"."""
    context = _tls_context(config)
    tcp_listeners = await trio.open_tcp_listeners(config.port, host=config.host)
    port = int(tcp_listeners[0].socket.getsockname()[1])
    listeners: list[trio.abc.Listener[trio.abc.Stream]] = list(tcp_listeners)
    if context is not None:
        listeners = [trio.SSLListener(listener, context) for listener in tcp_listeners]
    server = _Server(config, backend, clock or Clock(), throttle or AuthThrottle(), binds, refused)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(
            functools.partial(
                trio.serve_listeners, server.handle, listeners, handler_nursery=nursery
            )
        )
        nursery.start_soon(write_overdue_summaries, log, server.limiter)
        log.info("SMPP listening on %s:%d%s", config.host, port, " (TLS)" if context else "")
        task_status.started(port)
        try:
            await trio.sleep_forever()
        finally:
            server.begin_drain()
