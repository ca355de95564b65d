"""MT submission: authenticate, validate and encode each message of a request, queue the
accepted ones in durable writes (one per chunk of a big batch), and answer with a status per
message.

Never raises for bad input and never answers before the commit. Spec sections 2.1, 2.2, 6.1, 7.
"""

from __future__ import annotations

import enum
import functools
import hmac
import logging
import random
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Final, TypeVar

import msgspec
import trio

from drivers.gsm import (
    EncodedMessage,
    GsmError,
    MessageTooLong,
    NonGsmCharacter,
    ParsingType,
    encode_message,
    validity_period_minutes,
)
from edgegw.clock import Clock
from edgegw.config import ServiceConfig
from edgegw.http.inputs import ascii_count
from edgegw.http.puzzel import MessageChunks
from edgegw.ids import MessageIdGenerator, new_batch_reference
from edgegw.model import (
    STATUS_ENQUEUED,
    MessageRequest,
    MessageStatus,
    OriginatorType,
    SendRequest,
    SendResponse,
    StatusCode,
    UnreadableMessage,
)
from edgegw.passwords import PasswordChecker
from edgegw.pipeline.sendwindow import SendWindowError, first_opening, parse_send_window
from edgegw.store import (
    AnswerSeal,
    DailyWindow,
    NewMessage,
    Store,
    Write,
    batch_reference_used,
    used_client_references,
)

log = logging.getLogger(__name__)

_E164 = re.compile(r"\+[0-9]{8,15}")
# Spec 2.1: a recipient must be a mobile number; in Norway +47 and 8 digits starting 4, 9, 58 or
# 59. A Norwegian landline or a number of the wrong length is refused, as Puzzel refuses it. The
# Norwegian numbering plan also gives machine-to-machine SIMs 12-digit numbers in 58 and 59;
# those are mobile numbers too.
_NORWAY = "+47"
_NORWEGIAN_MOBILE = re.compile(r"\+47(?:[49][0-9]{7}|5[89](?:[0-9]{6}|[0-9]{10}))")
_WHITESPACE = re.compile(r"\s+")
# Spec 7.6: letters, digits, space and % & - + . , (upper case allowed too).
_ALPHANUMERIC = re.compile(r"[A-Za-z0-9 %&+.,-]{1,11}")
_NETWORK = re.compile(r"[0-9]{1,15}")
_HEX = re.compile(r"(?:[0-9A-Fa-f]{2})*")
# Bound once for every accepted message: reading a member off its Enum class runs a
# Python-level descriptor in Python 3.11.
_OK = StatusCode.OK

# Messages of a request validated and encoded between two yields to the event loop, so that a
# big batch does not stall other clients (issue 10: 25,000 messages held /health for 0.55 s).
SUBMIT_CHUNK = 100
# Accepted messages per write job: a 1000-message request is still one job and one commit, and
# a bigger one is inserted by the writer while its next messages are validated. The answer
# still comes after the last commit.
STORE_CHUNK = 1000
# Messages of a streamed request (`submit_stream`) stored in one write job and answered in one
# piece: small, since the groups alive at once (one being stored, the next validated) cost about
# 20 times their JSON in memory; a commit is still shared by a hundred messages.
STREAM_CHUNK = 100
# Write jobs of one request waiting for the store at once: enough to keep the writer busy while
# the next messages are validated, few enough that a writer slower than validation does not let
# a big batch's prepared rows pile up in memory.
CHUNKS_IN_FLIGHT = 2

_PREMIUM_PARAMETERS = frozenset(
    {
        "strex_verification_timeout",
        "strex_merchant_sell_option",
        "strex_confirm_channel",
        "strex_authorization_token",
    }
)
_NO_PREMIUM = "a modem cannot charge the recipient"
# TS 23.040 9.2.3.9: the TP-PIDs edgegw sends besides 0 (a plain SMS), whichever door a
# message came by: "Replace Short Message Type 1-7", which replace the handset's earlier SMS of
# the same type and originator (spec 2.1's `pid` 65-71). Type 0 (0x40: acknowledged and thrown
# away unseen), telematic interworking (0x20-0x3F), (U)SIM or ME data download and the rest ask
# for handling beyond a text to a handset, which no modem's SMSC promises; they are refused.
_REPLACE_PIDS: Final = range(0x41, 0x48)
_NO_SESSIONS = "sessions need short-number sub-addressing, which a modem does not have"


# Seconds a service that keeps clientReference or batchReference unique remembers one (spec
# 7.7: the last hour).
UNIQUE_REFERENCE_WINDOW = 3600.0
_BATCH_NOT_UNIQUE: Final = "Not unique: batchReference"


class Rejected(Exception):
    """One message of a request is refused with this status (spec section 6.1)."""

    def __init__(self, code: StatusCode, message: str, field: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        # What was wrong ("recipient", "originator", "length"; "" for anything else), so that
        # interfaces with finer status codes (SMPP) can tell.
        self.field = field


# Client text quoted in a status message is cut to this many characters: a hostile value (a
# recipient of 5,000 digits) is not echoed whole into every answer.
_SHOWN_CHARACTERS: Final = 32


def _shown(value: str) -> str:
    """`value` quoted for a status message, cut to _SHOWN_CHARACTERS with `...` after it."""
    if len(value) <= _SHOWN_CHARACTERS:
        return repr(value)
    return repr(value[:_SHOWN_CHARACTERS]) + "..."


def _syntax(detail: str, field: str = "") -> Rejected:
    return Rejected(StatusCode.SYNTAX_ERROR, f"Syntax error: {detail}", field)


_Choice = TypeVar("_Choice", bound=enum.StrEnum)


def _one_of(choices: type[_Choice], name: str, value: str) -> _Choice:
    """The member of `choices` that `value` names in any case, or a syntax error listing them."""
    try:
        return choices(value.upper())
    except ValueError:
        raise _syntax(f"{name} {_shown(value)} must be one of " + ", ".join(choices)) from None


# The statuses of a request refused as a whole, before any of its messages is read.
_WHOLE_REFUSALS: Final = {
    StatusCode.SYNTAX_ERROR: "Syntax error: serviceId is required",
    StatusCode.ILLEGAL_SERVICE: "Illegal service",
    StatusCode.ACCESS_ERROR: "Access denied",
}


def _whole_refusal(code: StatusCode) -> Rejected:
    return Rejected(code, _WHOLE_REFUSALS[code])


def _illegal(detail: str) -> Rejected:
    return Rejected(StatusCode.ILLEGAL_ACTION, f"Illegal action: {detail}")


# Spec 7.4: a validity code (0..173) is a relative TP-VP, 5 minutes to 7 days.
_SHORTEST_VALIDITY = validity_period_minutes(0)
_LONGEST_VALIDITY = validity_period_minutes(173)


def clamp_validity_minutes(minutes: int) -> int:
    """Spec 7.4: a validity period is at least 5 minutes and at most 7 days."""
    return max(_SHORTEST_VALIDITY, min(minutes, _LONGEST_VALIDITY))


def international_number(value: str) -> str:
    """The number as E.164 (`+` and 8 to 15 digits; spaces and a `00` prefix normalised), or
    Rejected."""
    if _E164.fullmatch(value) is not None:
        return value  # already normal, as nearly every recipient is
    number = normalise_msisdn(value)
    if _E164.fullmatch(number) is None:
        raise Rejected(
            StatusCode.SYNTAX_ERROR,
            f"Syntax error: recipient {_shown(value)} is not an international number"
            " (+ and 8 to 15 digits)",
            "recipient",
        )
    return number


def check_recipient(value: str) -> str:
    """The recipient as E.164, or Rejected (spec 2.1): its country code does not start with 0
    (E.164 has none that does: "+0047..." or "+041..." is a `+` put before a number written
    with its `00` or its national 0, which no network delivers), and a Norwegian one must be a
    mobile number."""
    recipient = international_number(value)
    if recipient[1] == "0":
        raise Rejected(
            StatusCode.SYNTAX_ERROR,
            f"Syntax error: recipient {_shown(value)} is not an international number"
            " (+ and a country code, which never starts with 0)",
            "recipient",
        )
    if recipient.startswith(_NORWAY) and _NORWEGIAN_MOBILE.fullmatch(recipient) is None:
        raise Rejected(
            StatusCode.SYNTAX_ERROR,
            f"Syntax error: recipient {_shown(value)} is not a Norwegian mobile number"
            " (+47 and 8 digits starting 4, 9, 58 or 59, or 12 starting 58 or 59)",
            "recipient",
        )
    return recipient


class DirectMessage(msgspec.Struct, frozen=True, kw_only=True):
    """A message from an interface that fills the message fields itself (SMPP) rather than
    sending a Puzzel request; None leaves a field to the service's configuration."""

    service_id: int
    recipient: str
    content: str  # text, or hex octets when `dcs` is an 8-bit coding
    originator: str | None = None
    originator_type: OriginatorType | None = None
    dcs: int | None = None
    udh: bytes = b""
    elements: bytes = b""  # information elements for every part's UDH (application ports)
    message_class: int | None = None  # TP-DCS message class 0..3 for the text's alphabet
    priority: int | None = None
    validity_minutes: int | None = None  # clamped to 5 minutes .. 7 days
    not_before: float | None = None
    new_session: bool = False  # refused as in a Puzzel request (X-NewSession of an email)
    data_coding: int | None = None  # an SMPP text's, kept for a replace_sm (NewMessage)
    pid: int = 0  # TP-PID: 0, or one of _REPLACE_PIDS
    user_message_reference: int | None = None  # an SMPP submit's, for its receipt (NewMessage)


def _release_nothing() -> None:
    """The release of a hold that did not wait."""


def normalise_msisdn(value: str) -> str:
    """Spaces out and a `00` prefix as `+` (spec 2.1: "+47 41 00 00 00" -> "+4741000000")."""
    number = _WHITESPACE.sub("", value)
    if number.startswith("00"):
        number = "+" + number[2:]
    return number


class Submitter:
    """The one entry point for MT messages from every interface (REST, GET, SOAP, SMTP, SMPP)."""

    def __init__(
        self,
        services: list[ServiceConfig],
        store: Store,
        clock: Clock,
        *,
        rng: random.Random | None = None,
        passwords: PasswordChecker | None = None,
    ) -> None:
        self._services = {service.id: service for service in services}
        self._store = store
        self._clock = clock
        self._ids = MessageIdGenerator()
        self._reference_guards = {
            service.id: trio.Semaphore(1)
            for service in services
            if service.unique_client_reference or service.unique_batch_reference
        }
        # (service, batchReference) of the batches being streamed in: their reference is taken
        # from the check of their first chunk on, though that chunk may store no message.
        self._streaming: set[tuple[int, str]] = set()
        self._passwords = PasswordChecker() if passwords is None else passwords
        # The concatenation reference only has to differ between messages that one handset
        # may be reassembling at the same time; a wrapping counter does that.
        self._reference = (rng or random.SystemRandom()).randrange(256)

    async def submit(self, request: SendRequest, seal: AnswerSeal | None = None) -> SendResponse:
        """Answer a Puzzel request with a status per message, after its accepted messages are
        committed. With `seal`, they are committed in one write job together with the rows the
        seal adds for the answer (see `_store_sealed`)."""
        batch_reference = request.batchReference or new_batch_reference()
        messages = request.message
        service = await self._admit(request)
        if isinstance(service, Rejected):
            return _all(batch_reference, messages, service.code, service.message)
        release_references = await self._hold_references(service)
        try:
            if await self._batch_repeated(service, request.batchReference):
                statuses: list[MessageStatus] = []
                _refuse_repeated_batch(messages, 1, statuses)
                response = SendResponse(batchReference=batch_reference, messageStatus=statuses)
                if seal is not None:
                    await self._store_sealed([], response, seal)
                return response
            return await self._submit_checked(service, messages, batch_reference, seal)
        finally:
            release_references()

    async def refusal(self, request: SendRequest) -> StatusCode | None:
        """The status every message of `request` gets before any is read (no serviceId, a
        service that does not exist, credentials that do not match it), or None when its
        messages are checked one by one. A request's own messages are not looked at."""
        service = await self._admit(request)
        return service.code if isinstance(service, Rejected) else None

    async def _admit(self, request: SendRequest) -> ServiceConfig | Rejected:
        """The service a request is sent with, or why all of its messages are refused."""
        if request.serviceId is None:
            return _whole_refusal(StatusCode.SYNTAX_ERROR)
        service = self._services.get(request.serviceId)
        if service is None:
            return _whole_refusal(StatusCode.ILLEGAL_SERVICE)
        if not await _credentials_match(
            service, request.username, request.password, self._passwords
        ):
            return _whole_refusal(StatusCode.ACCESS_ERROR)
        return service

    async def _submit_checked(
        self,
        service: ServiceConfig,
        messages: list[MessageRequest],
        batch_reference: str,
        seal: AnswerSeal | None,
    ) -> SendResponse:
        now = self._clock.now()
        statuses: list[MessageStatus] = []
        ids = self._ids.next_ids(now, len(messages)) if messages else []
        taken = await self._taken_references(service, messages, now)
        chunks = functools.partial(
            self._accepted_chunks, service, messages, ids, batch_reference, now, statuses, taken
        )
        if seal is not None:
            accepted = []
            async for chunk, _ in chunks():
                accepted += chunk
            response = SendResponse(batchReference=batch_reference, messageStatus=statuses)
            await self._store_sealed(accepted, response, seal)
            return response
        if len(messages) <= SUBMIT_CHUNK:
            accepted = self._accept_chunk(
                service, messages, 1, ids, batch_reference, now, statuses, taken
            )
            if accepted:
                await self._store_chunk(accepted, statuses, batch_reference)
        else:
            in_flight = trio.Semaphore(CHUNKS_IN_FLIGHT)

            async def store(accepted: list[tuple[int, NewMessage]]) -> None:
                try:
                    await self._store_chunk(accepted, statuses, batch_reference)
                finally:
                    in_flight.release()

            async with trio.open_nursery() as nursery:
                pending: list[tuple[int, NewMessage]] = []
                async for chunk, last in chunks():
                    pending += chunk
                    if pending and (len(pending) >= STORE_CHUNK or last):
                        await in_flight.acquire()
                        nursery.start_soon(store, pending)
                        pending = []
        return SendResponse(batchReference=batch_reference, messageStatus=statuses)

    async def _accepted_chunks(
        self,
        service: ServiceConfig,
        messages: list[MessageRequest],
        ids: list[str],
        batch_reference: str,
        now: float,
        statuses: list[MessageStatus],
        taken: set[str] | None,
    ) -> AsyncIterator[tuple[list[tuple[int, NewMessage]], bool]]:
        """The accepted messages of each SUBMIT_CHUNK of `messages` (their statuses appended
        to `statuses`), and whether it is the last; the loop runs other tasks between chunks."""
        for start in range(0, len(messages), SUBMIT_CHUNK):
            if start:
                await trio.lowlevel.checkpoint()
            stop = start + SUBMIT_CHUNK
            accepted = self._accept_chunk(
                service,
                messages[start:stop],
                start + 1,
                ids[start:stop],
                batch_reference,
                now,
                statuses,
                taken,
            )
            yield accepted, stop >= len(messages)

    async def submit_stream(
        self,
        request: SendRequest,
        messages: MessageChunks,
        emit: Callable[[SendResponse], Awaitable[None]],
        refused: StatusCode | None,
    ) -> None:
        """Answer a big request whose messages (`messages`; `request` carries none) are decoded
        a chunk at a time: every STREAM_CHUNK messages are validated, stored in one write job
        and, once committed, their statuses go to `emit`, in order and at least once. A request
        refused as a whole (`refused`, what `refusal` said of it, so that a wrong password is
        not checked twice) gets its statuses a chunk at a time too. Neither the decoded batch
        nor its statuses are ever held whole (issue 10 item 7)."""
        batch_reference = request.batchReference or new_batch_reference()
        if refused in _WHOLE_REFUSALS:
            service: ServiceConfig | Rejected = _whole_refusal(refused)
        else:
            service = await self._admit(request)
        if isinstance(service, Rejected):
            # Refused as a whole, a piece a chunk all the same: neither the decoded batch nor
            # its statuses are held, whoever sends it.
            for start in range(0, max(len(messages), 1), STREAM_CHUNK):
                chunk = messages.decode(start, start + STREAM_CHUNK)
                await emit(_all(batch_reference, chunk, service.code, service.message, start))
            return
        now = self._clock.now()
        taken: set[str] | None = set() if service.unique_client_reference else None
        in_flight = trio.Semaphore(CHUNKS_IN_FLIGHT)
        previous = trio.Event()
        previous.set()

        async def store_and_emit(
            accepted: list[tuple[int, NewMessage]],
            statuses: list[MessageStatus],
            before: trio.Event,
            done: trio.Event,
            release_references: Callable[[], None],
        ) -> None:
            try:
                try:
                    if accepted:
                        await self._store_chunk(accepted, statuses, batch_reference)
                        accepted.clear()  # stored: not kept while the chunk waits for its turn
                finally:
                    release_references()
                await before.wait()
                await emit(SendResponse(batchReference=batch_reference, messageStatus=statuses))
            finally:
                done.set()
                in_flight.release()

        total = len(messages)
        if not total:
            await emit(SendResponse(batchReference=batch_reference, messageStatus=[]))
        repeated = False
        streaming: tuple[int, str] | None = None
        try:
            async with trio.open_nursery() as nursery:
                for group in range(0, total, STREAM_CHUNK):
                    await in_flight.acquire()
                    # Held from the check of a chunk's references to its commit.
                    release_references = await self._hold_references(service)
                    statuses: list[MessageStatus] = []
                    accepted: list[tuple[int, NewMessage]] = []
                    try:
                        if not group:
                            # Checked once, before the request's own first chunk carries it.
                            repeated = await self._batch_repeated(service, request.batchReference)
                            if (
                                not repeated
                                and service.unique_batch_reference
                                and request.batchReference
                            ):
                                streaming = (service.id, request.batchReference)
                                self._streaming.add(streaming)
                        for start in range(group, min(group + STREAM_CHUNK, total), SUBMIT_CHUNK):
                            await trio.lowlevel.checkpoint()
                            stop = min(start + SUBMIT_CHUNK, group + STREAM_CHUNK)
                            chunk = messages.decode(start, stop)
                            if repeated:
                                _refuse_repeated_batch(chunk, start + 1, statuses)
                                continue
                            if taken is not None:
                                taken |= await self._taken_references(service, chunk, now) or set()
                            ids = self._ids.next_ids(now, len(chunk))
                            accepted += self._accept_chunk(
                                service,
                                chunk,
                                start + 1,
                                ids,
                                batch_reference,
                                now,
                                statuses,
                                taken,
                            )
                    except BaseException:
                        release_references()
                        raise
                    done = trio.Event()
                    nursery.start_soon(
                        store_and_emit, accepted, statuses, previous, done, release_references
                    )
                    previous = done
        finally:
            if streaming is not None:
                self._streaming.discard(streaming)

    def _accept_chunk(
        self,
        service: ServiceConfig,
        messages: Sequence[MessageRequest],
        first: int,
        ids: Sequence[str],
        batch_reference: str,
        now: float,
        statuses: list[MessageStatus],
        taken: set[str] | None,
    ) -> list[tuple[int, NewMessage]]:
        """Validate and encode `messages` (a chunk of the request whose first has sequence
        index `first`) with their `ids`, appending a status for each to `statuses`; the
        accepted ones with the position of their status. `taken`: the clientReferences already
        in use, for a service that keeps them unique."""
        accepted: list[tuple[int, NewMessage]] = []
        for sequence, message, message_id in zip(
            range(first, first + len(messages)), messages, ids, strict=True
        ):
            recipient = message.recipient
            try:
                recipient = _recipient_of(message)
                if taken is not None and message.clientReference in taken:
                    raise Rejected(StatusCode.NOT_UNIQUE, "Not unique: clientReference")
                new = self._accept(service, message, recipient, message_id, batch_reference, now)
                if taken is not None and message.clientReference:
                    taken.add(message.clientReference)  # a repeat later in the batch
            except Rejected as rejected:
                statuses.append(
                    _status(message, recipient, rejected.code, rejected.message, sequence)
                )
                continue
            except Exception:
                log.exception("submit: message %d of batch %s failed", sequence, batch_reference)
                statuses.append(
                    _status(
                        message, recipient, StatusCode.INTERNAL_ERROR, "Internal error", sequence
                    )
                )
                continue
            accepted.append((len(statuses), new))
            statuses.append(
                MessageStatus(
                    statusCode=_OK,
                    statusMessage=STATUS_ENQUEUED,
                    clientReference=message.clientReference,
                    recipient=recipient,
                    messageId=new.id,
                    sessionId=None,
                    sequenceIndex=sequence,
                )
            )
        return accepted

    async def _store_chunk(
        self,
        accepted: list[tuple[int, NewMessage]],
        statuses: list[MessageStatus],
        batch_reference: str,
        along: Write | None = None,
    ) -> bool:
        """Insert accepted messages (and the rows `along` adds) in one write job; if it fails,
        their statuses say so and the result is False."""
        try:
            await self._store.insert_messages([new for _, new in accepted], along=along)
        except Exception:
            log.exception("submit: storing batch %s failed", batch_reference)
            for position, _ in accepted:
                status = statuses[position]
                status.statusCode = StatusCode.INTERNAL_ERROR
                status.statusMessage = "Internal error"
                status.messageId = None
            return False
        return True

    async def _store_sealed(
        self, accepted: list[tuple[int, NewMessage]], response: SendResponse, seal: AnswerSeal
    ) -> None:
        """Every accepted message of the request in one write job with the seal's rows for
        the answer, whatever the request's size, so that both are committed or neither: a
        crash cannot keep the messages and lose the answer a retry would be given. If the
        write fails, the seal sees the answer again as it now is (those messages refused)."""
        along = seal(response)
        if not accepted and along is None:
            return
        stored = await self._store_chunk(
            accepted, response.messageStatus, response.batchReference, along
        )
        if not stored:
            seal(response)

    async def _hold_references(self, service: ServiceConfig) -> Callable[[], None]:
        """For a service that keeps clientReference or batchReference unique: wait until no
        other request of it is between checking its references and committing its messages, so
        that two concurrent requests cannot both take a new one; returns the release. Other
        services do not wait."""
        guard = self._reference_guards.get(service.id)
        if guard is None:
            return _release_nothing
        await guard.acquire()
        return guard.release

    async def _batch_repeated(self, service: ServiceConfig, reference: str | None) -> bool:
        """For a service that keeps batchReference unique (spec 7.7, the last hour): whether
        one of its messages already carries the client's `reference`. A generated one is
        new; one a batch being streamed in carries is taken, whether or not its messages are
        stored yet."""
        if not (service.unique_batch_reference and reference):
            return False
        if (service.id, reference) in self._streaming:
            return True
        since = self._clock.now() - UNIQUE_REFERENCE_WINDOW
        return await batch_reference_used(self._store, service.id, reference, since)

    async def _taken_references(
        self, service: ServiceConfig, messages: Sequence[MessageRequest], now: float
    ) -> set[str] | None:
        """For a service that keeps clientReference unique (spec 7.7, the last hour): the
        references of the batch its messages already carry; None when it does not check."""
        if not service.unique_client_reference:
            return None
        references = {m.clientReference for m in messages if m.clientReference}
        return await used_client_references(
            self._store, service.id, references, now - UNIQUE_REFERENCE_WINDOW
        )

    def _accept(
        self,
        service: ServiceConfig,
        message: MessageRequest,
        recipient: str,
        message_id: str,
        batch_reference: str,
        now: float,
    ) -> NewMessage:
        """Validate and encode one message whose `recipient` is checked (`_recipient_of`);
        raises Rejected with the status to answer."""
        if not message.content:
            raise _syntax("content is required")
        if message.price is not None and message.price < 0:
            raise _syntax(f"price {message.price} must not be negative")
        if message.price:
            raise _illegal(
                f"price {message.price}: premium messages are not possible, {_NO_PREMIUM}"
            )

        settings = message.settings
        priority = service.priority
        validity = service.validity
        originator = service.originator
        originator_type = service.originator_type._value_
        parsing = service.parsing_type
        dcs: int | None = None
        udh = b""
        pid = 0
        flash = False
        skip_report = False
        window: DailyWindow | None = None
        not_before = now
        ends_at: float | None = None
        if settings is not None:
            if settings.gasSettings is not None:
                raise _illegal(f"gasSettings: premium services are not possible, {_NO_PREMIUM}")
            if settings.age not in (None, 0, 16, 18):
                raise _syntax(f"age {settings.age} must be 0, 16 or 18")
            if settings.age:
                raise _illegal(f"age: age limits apply to premium messages, {_NO_PREMIUM}")
            if settings.newSession or settings.sessionId:
                raise _illegal(_NO_SESSIONS)
            if settings.priority is not None:
                if settings.priority not in (1, 2, 3):
                    raise _syntax(f"priority {settings.priority} must be 1, 2 or 3")
                priority = settings.priority
            if settings.validity is not None:
                if not 0 <= settings.validity <= 173:
                    raise _syntax(f"validity {settings.validity} must be from 0 to 173")
                validity = settings.validity
            if settings.originatorSettings is not None:
                originator, originator_type = parse_originator(
                    settings.originatorSettings.originator,
                    settings.originatorSettings.originatorType,
                )
            # Spec 7.2 precedence: dcs, then parsing-type, then autoDetectEncoding, then the
            # deprecated safeRemoveNonGsmCharacters, then the service default.
            if settings.safeRemoveNonGsmCharacters:
                parsing = ParsingType.SAFE_REMOVE_NON_GSM
            if settings.autoDetectEncoding:
                parsing = ParsingType.AUTO_DETECT
            for parameter in settings.parameter:
                key = parameter.key.lower()
                value = str(parameter.value).strip()
                if key == "dcs":
                    if len(value) != 2 or _HEX.fullmatch(value) is None:
                        raise _syntax(f"parameter dcs {_shown(value)} must be two hex digits")
                    dcs = int(value, 16)
                elif key == "udh":
                    if _HEX.fullmatch(value) is None:
                        raise _syntax(f"parameter udh {_shown(value)} must be hex octets")
                    udh = bytes.fromhex(value)
                elif key == "pid":
                    number = ascii_count(value)
                    if number is None or number not in _REPLACE_PIDS:
                        raise _syntax(f"parameter pid {_shown(value)} must be from 65 to 71")
                    pid = number
                elif key == "flash":
                    flash = value.lower() == "true"
                elif key == "parsing-type":
                    parsing = _one_of(ParsingType, "parameter parsing-type", value)
                elif key == "skip_customer_report_delivery":
                    skip_report = value.lower() == "true"
                elif key in _PREMIUM_PARAMETERS:
                    raise _illegal(f"parameter {parameter.key}: Strex payments, {_NO_PREMIUM}")
            if settings.sendWindow is not None:
                try:
                    schedule = parse_send_window(settings.sendWindow)
                except SendWindowError as exc:
                    raise _syntax(str(exc)) from None
                not_before = first_opening(schedule, now)
                ends_at = schedule.ends_at
                window = schedule.daily

        encoded = self._encode(
            message.content, parsing, dcs, udh, message_class=0 if flash else None
        )
        minutes = validity_period_minutes(validity)
        # Validity runs from the moment the message may first be sent, so a scheduled message
        # is not dead before its window opens.
        expires_at = not_before + minutes * 60
        if ends_at is not None:
            expires_at = min(expires_at, ends_at)
        return NewMessage(
            id=message_id,
            service_id=service.id,
            batch_reference=batch_reference,
            client_reference=message.clientReference,
            recipient=recipient,
            originator=originator,
            originator_type=originator_type,
            content=encoded.text,
            alphabet=encoded.alphabet._value_,
            priority=priority,
            validity_minutes=minutes,
            not_before=not_before,
            expires_at=expires_at,
            status_report=True,
            report_to_customer=service.delivery_reports and not skip_report,
            pid=pid,
            flash=flash,
            created_at=now,
            window=window,
            parts=encoded.parts,
        )

    def prepare(self, direct: DirectMessage) -> NewMessage:
        """Validate and encode a message an interface filled in itself, as `_accept` does a
        Puzzel one; raises Rejected. The caller stores it (its commit wakes the dispatcher)."""
        (prepared,) = self.prepare_many([direct])
        if isinstance(prepared, Rejected):
            raise prepared
        return prepared

    def prepare_many(self, directs: Sequence[DirectMessage]) -> list[NewMessage | Rejected]:
        """`prepare` for several messages at once (the submit_sm of one SMPP read): one clock
        reading and one run of ids for all; for each its NewMessage or its Rejected."""
        now = self._clock.now()
        ids = self._ids.next_ids(now, len(directs)) if directs else []
        prepared: list[NewMessage | Rejected] = []
        for direct, message_id in zip(directs, ids, strict=True):
            try:
                prepared.append(self._prepare(direct, message_id, now))
            except Rejected as rejected:
                prepared.append(rejected)
        return prepared

    def originator(
        self, service_id: int, originator: str | None, kind: OriginatorType | None
    ) -> str:
        """The originator a message of the service that names `originator` (None: leaves it
        to the service) goes out from, as `prepare` stores it; raises Rejected."""
        service = self._services.get(service_id)
        if service is None:
            raise Rejected(StatusCode.ILLEGAL_SERVICE, "Illegal service")
        return _sender(service, originator, kind)[0]

    def _prepare(self, direct: DirectMessage, message_id: str, now: float) -> NewMessage:
        service = self._services.get(direct.service_id)
        if service is None:
            raise Rejected(StatusCode.ILLEGAL_SERVICE, "Illegal service")
        if direct.new_session:
            raise _illegal(_NO_SESSIONS)
        recipient = check_recipient(direct.recipient)
        if direct.pid and direct.pid not in _REPLACE_PIDS:
            raise _syntax(
                f"TP-PID {direct.pid:#04x}: edgegw sends 0 or a replace type, 0x41 to 0x47"
            )
        originator, originator_type = _sender(service, direct.originator, direct.originator_type)
        parsing = service.parsing_type if direct.dcs is None else ParsingType.NONE
        encoded = self._encode(
            direct.content,
            parsing,
            direct.dcs,
            direct.udh,
            elements=direct.elements,
            message_class=direct.message_class,
        )
        minutes = clamp_validity_minutes(
            validity_period_minutes(service.validity)
            if direct.validity_minutes is None
            else direct.validity_minutes
        )
        not_before = now if direct.not_before is None else max(now, direct.not_before)
        return NewMessage(
            id=message_id,
            service_id=service.id,
            # One message per request: its id is unique already and cheaper than a new UUID.
            batch_reference=message_id,
            client_reference=None,
            recipient=recipient,
            originator=originator,
            originator_type=originator_type,
            content=encoded.text,
            alphabet=encoded.alphabet._value_,
            priority=service.priority if direct.priority is None else direct.priority,
            validity_minutes=minutes,
            not_before=not_before,
            expires_at=not_before + minutes * 60,
            status_report=True,
            report_to_customer=service.delivery_reports,
            pid=direct.pid,
            flash=False,
            created_at=now,
            window=None,
            parts=encoded.parts,
            data_coding=direct.data_coding,
            user_message_reference=direct.user_message_reference,
        )

    def _encode(
        self,
        content: str,
        parsing: ParsingType,
        dcs: int | None,
        udh: bytes,
        *,
        elements: bytes = b"",
        message_class: int | None = None,
    ) -> EncodedMessage:
        self._reference = (self._reference + 1) & 0xFF
        try:
            encoded = encode_message(
                content,
                parsing=parsing,
                reference=self._reference,
                dcs=dcs,
                udh=udh,
                elements=elements,
                message_class=message_class,
            )
        except NonGsmCharacter as exc:
            raise _syntax(
                f"content: character {exc.char!r} at position {exc.index}"
                " is not in the GSM 03.38 alphabet"
            ) from None
        except MessageTooLong as exc:
            raise _syntax(
                f"content: the message needs {exc.parts} SMS parts, at most {exc.max_parts}"
                " are allowed",
                "length",
            ) from None
        except GsmError as exc:
            raise _syntax(f"content: {exc}") from None
        if not encoded.text:
            raise _syntax("content: nothing is left to send once non-GSM characters are removed")
        return encoded


def _recipient_of(message: MessageRequest) -> str:
    """The recipient of a Puzzel message as E.164, or Rejected: checked before the rest of the
    message, so that a message refused for the rest still answers with its recipient in the
    normalised form (spec 2.1, 2.2)."""
    if type(message) is UnreadableMessage:
        raise _syntax(f"{message.field}: {message.reason}", message.field)
    if not message.recipient:
        raise _syntax("recipient is required", "recipient")
    return check_recipient(message.recipient)


def parse_originator(originator: str | None, kind: str | None) -> tuple[str, str]:
    """Spec 7.6: (originator, type) from originatorSettings, type matched case-insensitively."""
    if not kind:
        raise _syntax("originatorSettings.originatorType is required")
    originator_type = _one_of(OriginatorType, "originatorSettings.originatorType", kind)
    if not originator:
        raise _syntax("originatorSettings.originator is required")
    if originator_type is OriginatorType.ALPHANUMERIC:
        if _ALPHANUMERIC.fullmatch(originator) is None:
            raise _syntax(
                f"originatorSettings.originator {_shown(originator)}: an alphanumeric originator"
                " is 1 to 11 letters, digits, spaces or % & - + . ,"
            )
    elif originator_type is OriginatorType.INTERNATIONAL:
        originator = normalise_msisdn(originator)
        if _E164.fullmatch(originator) is None:
            raise _syntax(
                f"originatorSettings.originator {_shown(originator)}: an international originator"
                " is + and 8 to 15 digits"
            )
    elif _NETWORK.fullmatch(originator) is None:
        raise _syntax(
            f"originatorSettings.originator {_shown(originator)}: a network originator is a short"
            " number of digits"
        )
    return originator, originator_type.value


# The originators an interface fills in repeat (an ESME sends every message from the same few):
# a valid one is checked once. Rejected is never cached, so a bad one is checked each time.
_known_originator = functools.lru_cache(maxsize=256)(parse_originator)


def _sender(
    service: ServiceConfig, originator: str | None, kind: OriginatorType | None
) -> tuple[str, str]:
    """The originator and its type of a message that names `originator` (alphanumeric unless
    `kind` says otherwise), or the service's own when it names none; raises Rejected."""
    if not originator:
        return service.originator, service.originator_type._value_
    try:
        return _known_originator(originator, (kind or OriginatorType.ALPHANUMERIC).value)
    except Rejected as exc:
        raise Rejected(exc.code, exc.message, "originator") from None


async def _credentials_match(
    service: ServiceConfig,
    username: str | None,
    password: str | None,
    passwords: PasswordChecker,
) -> bool:
    # Both comparisons always run, in constant time, so timing tells nothing about either;
    # the service's password may be plaintext or an scrypt hash (edgegw.passwords).
    user_ok = hmac.compare_digest(service.username.encode(), (username or "").encode())
    password_ok = await passwords.verify(service.password, password or "")
    return user_ok and password_ok and username is not None and password is not None


def _refuse_repeated_batch(
    messages: Sequence[MessageRequest], first: int, statuses: list[MessageStatus]
) -> None:
    """The statuses of a request whose batchReference the service keeps unique and has already
    taken (spec 7.7): 25 for each message, whose recipient is answered normalised as on any
    refusal of a single message (or 5, when it is no recipient at all)."""
    for sequence, message in enumerate(messages, first):
        recipient: str | None
        try:
            recipient = _recipient_of(message)
            refused = Rejected(StatusCode.NOT_UNIQUE, _BATCH_NOT_UNIQUE)
        except Rejected as bad:
            recipient, refused = message.recipient, bad
        statuses.append(_status(message, recipient, refused.code, refused.message, sequence))


def _status(
    message: MessageRequest, recipient: str | None, code: StatusCode, text: str, sequence: int
) -> MessageStatus:
    return MessageStatus(
        statusCode=code,
        statusMessage=text,
        clientReference=message.clientReference,
        recipient=recipient,
        messageId=None,
        sessionId=None,
        sequenceIndex=sequence,
    )


def _all(
    batch_reference: str,
    messages: Sequence[MessageRequest],
    code: StatusCode,
    text: str,
    before: int = 0,
) -> SendResponse:
    """`messages`, the request's from number `before` + 1 on, all answered `code`."""
    return SendResponse(
        batchReference=batch_reference,
        messageStatus=[
            _status(message, message.recipient, code, text, sequence)
            for sequence, message in enumerate(messages, before + 1)
        ],
    )
