"""The gateway core behind the SMPP door: implements `edgegw.smpp.backend.SmppBackend` over the
submit pipeline and the store (submits, query_sm/cancel_sm/replace_sm, the durable outbox to
ESMEs).

A submit is answered only after its commit; it never keeps an item only in memory (the Events
only wake sessions up). Spec section 2.7; SMPP 3.4 sections 4.4, 4.6, 4.8, 4.9, 4.10 and 5.2.28.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import itertools
import logging
import math
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final

import msgspec
import trio

from drivers.gsm import message_class, port_ie, port_info
from drivers.gsm.udh import whole_udh
from edgegw.clock import Clock
from edgegw.delivery.smpp_outbox import (
    newest_items,
    pending_outbound,
    record_answer,
    smpp_state,
)
from edgegw.model import (
    EXPIRY,
    NETWORK_TOOK_A_PART_SQL,
    MessageState,
    OriginatorType,
    is_final,
)
from edgegw.passwords import PasswordChecker
from edgegw.pipeline.submit import DirectMessage, Rejected, Submitter, check_recipient
from edgegw.smpp.backend import (
    Accepted,
    Account,
    AccountTable,
    BindMode,
    QueryResult,
    SubmitRefused,
)
from edgegw.smpp.config import SmppAccount
from edgegw.smpp.constants import CommandStatus, Tag
from edgegw.smpp.errors import InvalidField
from edgegw.smpp.outbound import Outbound
from edgegw.smpp.pdu import CancelSm, ReplaceSm, SubmitSm, UnsuccessfulDelivery
from edgegw.smpp.submission import (
    TON_ALPHANUMERIC,
    Address,
    Submission,
    format_time,
    submission_from_submit_sm,
    tp_dcs,
)
from edgegw.smpp.tlv import Tlvs, int_tlv
from edgegw.store import IllegalTransition, NewMessage, Store, StoreUnwritable, transactions

__all__ = ["GatewaySmppBackend", "direct_message"]

log = logging.getLogger(__name__)

# The slow safety net: the store wakes the watcher after every commit that queued a receipt or
# an MO (Topic.SMPP); should a wake-up be missed, it still looks this often.
POLL_SECONDS: Final = 0.5
_TON_INTERNATIONAL: Final = 1
_STATUS_FOR_FIELD: Final = {
    "recipient": CommandStatus.ESME_RINVDSTADR,
    "originator": CommandStatus.ESME_RINVSRCADR,
    "length": CommandStatus.ESME_RINVMSGLEN,
}


def _international(address: Address) -> str:
    """An SMPP number as the pipeline's E.164: digits of an international (or unknown, as most
    ESMEs send) number get their `+`; `00...` and `+...` are left to normalise_msisdn."""
    number = address.address
    if number.isdigit() and not number.startswith("00"):
        return "+" + number
    return number


def _originator(source: Address) -> tuple[str | None, OriginatorType | None]:
    value = source.address
    if not value:
        return None, None
    if source.ton == TON_ALPHANUMERIC or not value.removeprefix("+").isdigit():
        return value, OriginatorType.ALPHANUMERIC
    if source.ton == _TON_INTERNATIONAL or value.startswith("+") or len(value) >= 8:
        return _international(source), OriginatorType.INTERNATIONAL
    return value, OriginatorType.NETWORK


def _all_past(ends: Sequence[float], now: float) -> bool:
    """Whether every message whose validity ends at `ends` is past it at `now`: no longer
    pending delivery (SMPP 3.4 sections 4.9.1 and 4.10), so a cancel_sm or replace_sm of
    them is refused whatever the store can write. While its disk is full, the write that
    would expire them as the sweep does fails; they stay as the store holds them, as a
    query_sm shows them, and the sweep expires them once there is room."""
    return all(EXPIRY.reached(end, now) for end in ends)


def _kept_tlvs(ports: tuple[int, int] | None, kept_class: int | None) -> Tlvs:
    """The TLVs of the submit_sm that a replace_sm (which carries none) keeps, read back from
    the message's first part: its application ports and its message class."""
    tlvs: list[tuple[int, bytes]] = []
    if ports is not None:
        tlvs += (int_tlv(Tag.DESTINATION_PORT, ports[0]), int_tlv(Tag.SOURCE_PORT, ports[1]))
    if kept_class is not None:
        tlvs.append(int_tlv(Tag.DEST_ADDR_SUBUNIT, kept_class + 1))  # SMPP 3.4 5.3.2.1
    return tuple(tlvs)


def direct_message(
    service_id: int, submission: Submission, destination: Address, now: float
) -> DirectMessage:
    """The pipeline's message for one destination of a submit, sent with the TP-DCS its
    data_coding asks for (`tp_dcs`: UCS-2, 8-bit data, a message class), or else as text that
    follows the service's parsing type; with the application ports (in every part) and the
    message class the submit's TLVs ask for. priority_flag 0 keeps the service's priority, 1 is
    medium, 2 and 3 high (spec 7.2). protocol_id is the TP-PID (SMPP 3.4 5.2.13), which the
    pipeline checks as it does the REST `pid`."""
    content = submission.payload.hex() if submission.text is None else submission.text
    not_before = None if submission.schedule is None else submission.schedule.timestamp()
    minutes = None
    if submission.validity is not None:
        start = now if not_before is None else max(now, not_before)
        minutes = math.ceil((submission.validity.timestamp() - start) / 60)
    originator, originator_type = _originator(submission.source)
    return DirectMessage(
        service_id=service_id,
        recipient=_international(destination),
        content=content,
        originator=originator,
        originator_type=originator_type,
        dcs=tp_dcs(submission.data_coding),
        udh=submission.udh,
        elements=b"" if submission.ports is None else port_ie(*submission.ports),
        message_class=submission.message_class,
        priority=None if submission.priority == 0 else min(submission.priority + 1, 3),
        validity_minutes=minutes,
        not_before=not_before,
        data_coding=submission.data_coding,
        pid=submission.protocol_id,
        user_message_reference=submission.user_message_reference,
    )


class GatewaySmppBackend:
    """SmppBackend over the store. Start `run` in a nursery: it wakes sessions when new
    outbox items for their service have committed."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        submitter: Submitter,
        accounts: Iterable[SmppAccount],
        *,
        on_accepted: Callable[[int, int], None] | None = None,
        passwords: PasswordChecker | None = None,
    ) -> None:
        self._store = store
        # Told (service id, messages) after each committed submit; the gateway counts them.
        self._on_accepted = on_accepted
        self._clock = clock
        self._submitter = submitter
        self._accounts = AccountTable(accounts, passwords)
        self._signals: dict[int, trio.Event] = {}
        self._wakeup = trio.Event()
        # Items an ESME acknowledged while the disk was full, with when: recorded by `run`
        # once there is room, and offered to no session meanwhile.
        self._acknowledged: dict[int, float] = {}

    # -- sessions ---------------------------------------------------------------------------

    async def authenticate(self, system_id: str, password: str, mode: BindMode) -> Account:
        return await self._accounts.authenticate(system_id, password)

    async def submit(self, account: Account, submission: Submission) -> str:
        """One submission's messageId once committed, or SubmitRefused."""
        (result,) = await self.submit_many(account, [submission])
        if isinstance(result, SubmitRefused):
            raise result
        return result.message_id

    async def submit_many(
        self, account: Account, submissions: Sequence[Submission]
    ) -> list[Accepted | SubmitRefused]:
        now = self._clock.now()
        service_id = account.service_id
        # submit_multi gets one message per destination; its response names the first.
        directs = [
            direct_message(service_id, submission, destination, now)
            for submission in submissions
            for destination in submission.destinations
        ]
        prepared = iter(self._submitter.prepare_many(directs))
        results: list[Accepted | SubmitRefused] = []
        # One group of messages per receipt request, all stored in one write.
        groups: dict[int, list[NewMessage]] = {}
        for submission in submissions:
            messages: list[NewMessage] = []
            unsuccessful: list[UnsuccessfulDelivery] = []
            # The first refusal of what every destination shares (the text, a setting), else
            # of a destination on its own.
            refused: Rejected | None = None
            for destination, result in zip(
                submission.destinations,
                itertools.islice(prepared, len(submission.destinations)),
                strict=True,
            ):
                if not isinstance(result, Rejected):
                    messages.append(result)
                elif result.field == "recipient":
                    # A destination refused on its own: submit_multi lists it in unsuccess_sme
                    # and stores the others (SMPP 3.4 section 4.5.2).
                    unsuccessful.append(
                        UnsuccessfulDelivery(
                            destination.ton,
                            destination.npi,
                            destination.address,
                            _STATUS_FOR_FIELD["recipient"],
                        )
                    )
                    refused = refused or result
                elif refused is None or refused.field == "recipient":
                    refused = result
            if refused is not None and (refused.field != "recipient" or not messages):
                status = _STATUS_FOR_FIELD.get(refused.field, CommandStatus.ESME_RSUBMITFAIL)
                results.append(SubmitRefused(status, refused.message))
                continue
            groups.setdefault(int(submission.receipt), []).extend(messages)
            results.append(Accepted(messages[0].id, tuple(unsuccessful)))
        if groups:
            await self._store.insert_message_groups(
                [(messages, receipt) for receipt, messages in groups.items()]
            )
            if self._on_accepted is not None:
                accepted = sum(len(messages) for messages in groups.values())
                self._on_accepted(account.service_id, accepted)
        return results

    async def query(self, account: Account, message_id: str) -> QueryResult | None:
        """SMPP 3.4 4.8.2. Its error_code is the network's own code for a failed delivery:
        the TP-ST of the status report that failed the message (TS 23.040 9.2.3.15), else 0.
        The DR code is the gateway's and does not fit the field's one octet. A message past
        its validity is EXPIRED, though the sweep has not come round to it."""
        await self._store.expire_if_past(account.service_id, message_id, self._clock.now())

        def read(conn: sqlite3.Connection) -> Any:
            return conn.execute(
                f"SELECT state, dr_status, {NETWORK_TOOK_A_PART_SQL}, done_at,"
                " (SELECT report_status FROM parts WHERE message_id = messages.id"
                " AND state = 'failed' AND report_status IS NOT NULL"
                " AND reported_at <= messages.done_at ORDER BY reported_at LIMIT 1)"
                " FROM messages WHERE id = ? AND service_id = ?",
                (message_id, account.service_id),
            ).fetchone()

        row = await self._store.read(read)
        if row is None:
            return None
        state, (dr_status, went_out, done_at, report_status) = MessageState(row[0]), row[1:]
        return QueryResult(
            message_state=smpp_state(state, dr_status, bool(went_out)),
            final_date=(
                dt.datetime.fromtimestamp(done_at, dt.UTC)
                if is_final(state, dr_status) and done_at is not None
                else None
            ),
            error_code=(report_status or 0) if state is MessageState.FAILED else 0,
        )

    async def cancel(self, account: Account, pdu: CancelSm) -> CommandStatus:
        """SMPP 3.4 4.9.1: the service's message of the message_id, whose source_addr and
        destination_addr, where given, must be the message's; or, with no message_id, every
        message still queued that the service sent by SMPP from the source_addr (NULL: from
        the service's own originator, as a submit_sm without one goes) to the destination_addr.
        A service_type would narrow that to messages of its type, which the gateway does not
        keep, so such a cancel_sm cancels nothing."""
        now = self._clock.now()
        select = "SELECT id, expires_at FROM messages WHERE service_id = ?"
        args: list[object] = [account.service_id]
        if pdu.message_id:
            select += " AND id = ?"
            args.append(pdu.message_id)
        elif pdu.service_type:
            return CommandStatus.ESME_RCANCELFAIL
        else:
            select += " AND state = 'queued' AND data_coding IS NOT NULL"
        source = Address(pdu.source_addr_ton, pdu.source_addr_npi, pdu.source_addr)
        destination = Address(pdu.dest_addr_ton, pdu.dest_addr_npi, pdu.destination_addr)
        try:
            if destination.address or not pdu.message_id:
                select += " AND recipient = ?"
                args.append(check_recipient(_international(destination)))
            if source.address or not pdu.message_id:
                select += " AND originator = ?"
                args.append(self._submitter.originator(account.service_id, *_originator(source)))
        except Rejected:
            return CommandStatus.ESME_RCANCELFAIL  # no message of the service has that address

        # Read apart from the writer: without a message_id, the pair's messages are found
        # among all the service's queued ones (tens of ms on a big campaign), which the
        # writer's job would hold every other write for.
        found = await self._store.read(lambda conn: conn.execute(select, args).fetchall())

        def cancel(conn: sqlite3.Connection) -> int:
            cancelled = 0
            for message_id, _ in found:
                try:
                    transactions.cancel(
                        conn,
                        self._store.effects,
                        message_id,
                        "cancelled by the ESME (cancel_sm)",
                        now,
                    )
                except IllegalTransition:
                    continue  # claimed for sending (or final) since it was read
                cancelled += 1
            return cancelled

        try:
            cancelled = await self._store.write(cancel) if found else 0
        except StoreUnwritable:
            if not _all_past([ends for _, ends in found], now):
                raise
            return CommandStatus.ESME_RCANCELFAIL
        return CommandStatus.ESME_ROK if cancelled else CommandStatus.ESME_RCANCELFAIL

    async def replace(self, account: Account, pdu: ReplaceSm) -> CommandStatus:
        """SMPP 3.4 4.10: the new short_message is read in the data_coding of the submit_sm
        (replace_sm carries none) and checked as a submit_sm with the message's own source,
        destination and data_coding would be, by the same code; then split again."""
        now = self._clock.now()

        def read(conn: sqlite3.Connection) -> Any:
            return conn.execute(
                "SELECT recipient, originator, originator_type, data_coding, not_before,"
                " validity_minutes, expires_at,"
                " (SELECT count(*) FROM parts WHERE message_id = messages.id),"
                " (SELECT udh FROM parts WHERE message_id = messages.id AND idx = 1),"
                " (SELECT dcs FROM parts WHERE message_id = messages.id AND idx = 1)"
                " FROM messages WHERE id = ? AND service_id = ?",
                (pdu.message_id, account.service_id),
            ).fetchone()

        row = await self._store.read(read) if pdu.message_id else None
        if row is None or row[3] is None:
            return CommandStatus.ESME_RINVMSGID  # none of the service's, or not from SMPP
        recipient, originator, kind, data_coding, not_before, minutes, ends, parts, udh, dcs = row
        source = Address(pdu.source_addr_ton, pdu.source_addr_npi, pdu.source_addr)
        if source.address:
            try:
                named = self._submitter.originator(account.service_id, *_originator(source))
            except Rejected:
                return CommandStatus.ESME_RINVMSGID  # no message has that source
            if named != originator:
                return CommandStatus.ESME_RINVMSGID  # the message id with another source
        # The application ports of the submit_sm (in every part's UDH) go with the new text.
        ports = port_info(udh)
        if parts == 1 and udh != (b"" if ports is None else whole_udh(port_ie(*ports))):
            # A part of the ESME's own concatenated message: its new text would need the
            # esm_class that replace_sm does not carry.
            return CommandStatus.ESME_RREPLACEFAIL
        as_submitted = SubmitSm(
            sequence_number=pdu.sequence_number,
            source_addr_ton=pdu.source_addr_ton,
            source_addr_npi=pdu.source_addr_npi,
            source_addr=pdu.source_addr,
            dest_addr_ton=_TON_INTERNATIONAL,
            destination_addr=recipient.removeprefix("+"),
            # Left out (SMPP 3.4 4.10.1: NULL keeps the original), the schedule and the end of
            # the validity stay, and each is checked against the other as a submit_sm's are.
            # An end already past is no field of the ESME's but the message's expiry: the
            # store expires it as the sweep would and refuses (ESME_RREPLACEFAIL).
            schedule_delivery_time=pdu.schedule_delivery_time
            or format_time(dt.datetime.fromtimestamp(not_before, dt.UTC)),
            validity_period=pdu.validity_period
            or (
                ""
                if EXPIRY.reached(ends, now)
                else format_time(dt.datetime.fromtimestamp(ends, dt.UTC))
            ),
            registered_delivery=pdu.registered_delivery,
            data_coding=data_coding,
            short_message=pdu.short_message,
            tlvs=_kept_tlvs(ports, message_class(dcs)),
        )
        try:
            submission = submission_from_submit_sm(
                as_submitted, dt.datetime.fromtimestamp(now, dt.UTC)
            )
        except InvalidField as exc:
            return CommandStatus(exc.command_status)
        direct = direct_message(account.service_id, submission, submission.destinations[0], now)
        direct = msgspec.structs.replace(
            direct, originator=originator, originator_type=OriginatorType(kind)
        )
        try:
            new = self._submitter.prepare(direct)
        except Rejected as exc:
            return _STATUS_FOR_FIELD.get(exc.field, CommandStatus.ESME_RREPLACEFAIL)
        if not pdu.validity_period:
            # The end as it was to the second, not as whole minutes from now would round it.
            new = msgspec.structs.replace(new, validity_minutes=minutes, expires_at=ends)

        def replace(conn: sqlite3.Connection) -> bool:
            return transactions.replace(
                conn, self._store.effects, pdu.message_id, new, int(submission.receipt), now
            )

        try:
            replaced = await self._store.write(replace)
        except StoreUnwritable:
            if not _all_past([ends], now):
                raise
            return CommandStatus.ESME_RREPLACEFAIL
        return CommandStatus.ESME_ROK if replaced else CommandStatus.ESME_RREPLACEFAIL

    # -- the outbox -------------------------------------------------------------------------

    async def pending(self, service_id: int, limit: int, exclude: frozenset[int]) -> list[Outbound]:
        exclude |= frozenset(self._acknowledged)
        return await self._store.read(
            functools.partial(pending_outbound, service_id=service_id, limit=limit, exclude=exclude)
        )

    async def delivered(self, outbound_id: int) -> None:
        """Record the ESME's ESME_ROK; with the disk full, later (`run`), and meanwhile the
        item is offered no more: the ESME has it."""
        answers = {outbound_id: self._clock.now()}
        try:
            await self._store.write(functools.partial(_record_delivered, answers=answers))
        except StoreUnwritable:
            self._acknowledged |= answers

    async def failed(
        self, outbound_id: int, command_status: int, *, for_good: bool = False
    ) -> None:
        now = self._clock.now()
        refused = await self._store.write(
            functools.partial(
                record_answer,
                outbound_id=outbound_id,
                command_status=command_status,
                now=now,
                for_good=for_good,
            )
        )
        if refused is not None:
            kind, message_id = refused
            log.warning(
                "SMPP: the %s of message %s is refused for good (command_status %#x);"
                " it is not offered again",
                kind,
                message_id,
                command_status,
            )

    def outbound_signal(self, service_id: int) -> trio.Event:
        signal = self._signals.get(service_id)
        if signal is None:
            signal = self._signals[service_id] = trio.Event()
        return signal

    def wake(self) -> None:
        """Something committed new outbox items (the store calls it after such a commit): look
        now, not at the poll."""
        self._wakeup.set()

    def _notify(self, service_id: int) -> None:
        signal = self._signals.pop(service_id, None)
        if signal is not None:
            signal.set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Set the services' signals after commits that added outbox items."""

        def newest(conn: sqlite3.Connection) -> int:
            row = conn.execute("SELECT MAX(id) FROM smpp_outbox").fetchone()
            return int(row[0] or 0)

        seen = await self._store.read(newest)
        task_status.started()
        while True:
            with trio.move_on_after(POLL_SECONDS):
                await self._wakeup.wait()
            self._wakeup = trio.Event()
            if self._acknowledged:
                answers = dict(self._acknowledged)
                # While the disk is full they stay, and the next round records them.
                with contextlib.suppress(StoreUnwritable):
                    await self._store.write(functools.partial(_record_delivered, answers=answers))
                    for outbound_id in answers:
                        del self._acknowledged[outbound_id]
            try:
                added = await self._store.read(functools.partial(newest_items, after_id=seen))
            except Exception:
                log.exception("SMPP outbox watch failed")
                continue
            for service_id, newest_id in added:
                seen = max(seen, newest_id)
                self._notify(service_id)


def _record_delivered(conn: sqlite3.Connection, answers: dict[int, float]) -> None:
    """The ESME_ROK of each item (outbound id -> when it came)."""
    for outbound_id, at in answers.items():
        record_answer(conn, outbound_id=outbound_id, command_status=0, now=at)
