"""Domain records of edgegw: the Puzzel send request and response, messages, parts and states.

Pure data: no I/O, no clock. Field names of the API structs follow the Puzzel SMSGW wire names
(spec section 2.1 and 2.2); the interfaces decode into these and encode from them.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Final

import msgspec

from drivers.gsm.parts import EncodedPart


class StatusCode(enum.IntEnum):
    """MT submission status, `messageStatus.statusCode` (spec section 6.1)."""

    OK = 1
    ACCESS_ERROR = 2
    ILLEGAL_ACTION = 3
    ILLEGAL_SERVICE = 4
    SYNTAX_ERROR = 5
    INTERNAL_ERROR = 6
    QUOTA_EXCEEDED = 24
    NOT_UNIQUE = 25


STATUS_ENQUEUED = "Message enqueued for sending"


class OriginatorType(enum.StrEnum):
    """`originatorSettings.originatorType` (spec section 7.6); matched case-insensitively."""

    INTERNATIONAL = "INTERNATIONAL"
    ALPHANUMERIC = "ALPHANUMERIC"
    NETWORK = "NETWORK"


# ---------------------------------------------------------------------------------------------
# The send request, as every MT interface (REST JSON/XML/form, GET, SOAP) decodes it.
# Fields stay loosely typed where clients are known to vary (spec section 2.1, tolerance rules);
# pipeline.submit validates them and answers with a per-message status.
# Encoded, a request holds only the fields given (`omit_defaults`): the JSON decoder counts on
# that to tell a body that repeats a name (edgegw.http.puzzel, `_may_repeat_names`).


class OriginatorSettings(msgspec.Struct, kw_only=True, omit_defaults=True):
    originator: str | None = None
    originatorType: str | None = None


class GasSettings(msgspec.Struct, kw_only=True, omit_defaults=True):
    serviceCode: str | None = None
    description: str | None = None


class SendWindow(msgspec.Struct, kw_only=True, omit_defaults=True):
    startDate: str | None = None
    startTime: str | None = None
    stopDate: str | None = None
    stopTime: str | None = None


class Parameter(msgspec.Struct, kw_only=True, omit_defaults=True):
    key: str
    value: str


class Settings(msgspec.Struct, kw_only=True, omit_defaults=True):
    priority: int | None = None
    validity: int | None = None
    differentiator: str | None = None
    invoiceNode: str | None = None
    age: int | None = None
    newSession: bool | None = None
    sessionId: str | None = None
    autoDetectEncoding: bool | None = None
    safeRemoveNonGsmCharacters: bool | None = None
    originatorSettings: OriginatorSettings | None = None
    gasSettings: GasSettings | None = None
    sendWindow: SendWindow | None = None
    parameter: list[Parameter] = msgspec.field(default_factory=list)


class MessageRequest(msgspec.Struct, kw_only=True, omit_defaults=True):
    recipient: str | None = None
    content: str | None = None
    price: int | None = None
    clientReference: str | None = None
    settings: Settings | None = None
    priceXml: str | None = None


class UnreadableMessage(MessageRequest, kw_only=True):
    """A message of a request that parsed but whose fields are not of the types above (a number
    for the recipient, a list for settings). The decoders keep its place with this, with the
    recipient and clientReference where they are text, and the submitter answers it alone with
    status 5, naming `field` (within the message) and `reason`. Never decoded from a request."""

    field: str
    reason: str


class SendRequest(msgspec.Struct, kw_only=True, omit_defaults=True):
    serviceId: int | None = None
    username: str | None = None
    password: str | None = None
    batchReference: str | None = None
    message: list[MessageRequest] = msgspec.field(default_factory=list)


class MessageStatus(msgspec.Struct, kw_only=True):
    """One entry of the response, in the XSD's field order (spec section 2.2)."""

    statusCode: int
    statusMessage: str
    clientReference: str | None
    recipient: str | None
    messageId: str | None
    sessionId: str | None
    sequenceIndex: int


# The statuses that refuse a whole request for its login: wrong credentials, or a service that
# does not exist (spec 6.1).
LOGIN_FAILURES: Final = frozenset({StatusCode.ACCESS_ERROR, StatusCode.ILLEGAL_SERVICE})


class SendResponse(msgspec.Struct, kw_only=True):
    batchReference: str
    messageStatus: list[MessageStatus]

    def login_refusal(self) -> StatusCode | None:
        """Why every message was refused for the request's login, or None: refused credentials
        (status 2, when all got it), else a service that does not exist (status 4, also when
        2 and 4 are mixed), which the login throttle counts as a failed login too, so that
        walking service ids is slowed like guessing passwords."""
        refusal = None
        for status in self.messageStatus:
            if status.statusCode not in LOGIN_FAILURES:
                return None  # at the first message accepted, or refused for itself
            if refusal is None or status.statusCode == StatusCode.ILLEGAL_SERVICE:
                refusal = StatusCode(status.statusCode)
        return refusal

    def failed_login(self) -> bool:
        """What the login throttle counts as a failed login, whichever door the request came
        through (`login_refusal`)."""
        return self.login_refusal() is not None


# ---------------------------------------------------------------------------------------------
# Stored messages.


class MessageState(enum.StrEnum):
    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    DELIVERED = "delivered"
    FAILED = "failed"
    EXPIRED = "expired"
    CANCELLED = "cancelled"


TERMINAL_STATES = frozenset(
    {MessageState.DELIVERED, MessageState.FAILED, MessageState.EXPIRED, MessageState.CANCELLED}
)


class DrStatus(enum.IntEnum):
    """The DR status code of a final outcome (spec section 4.4), with its description as the
    customer's DR carries it (`statusdescription`, in our words)."""

    description: str

    def __new__(cls, value: int, description: str) -> DrStatus:
        member = int.__new__(cls, value)
        member._value_ = value
        member.description = description
        return member

    DELIVERED = 0, "OK. Message processed successfully."
    UNKNOWN_OPERATOR = 350, "Unknown or invalid network operator."
    UNKNOWN_RECIPIENT = 351, "Unknown recipient."
    NO_BULK = 354, "Account may not send bulk messages."
    TARIFF = 355, "Tariff missing or not allowed."
    TEMPORARILY_BARRED = 356, "Subscriber temporarily barred."
    PERMANENTLY_BARRED = 357, "Subscriber permanently barred."
    OPTED_OUT = 358, "Subscriber has opted out of premium messages."
    TOO_YOUNG = 359, "Subscriber too young for the message's age limit."
    SYNTAX_ERROR = 360, "Syntax error reported by the operator."
    VALIDITY_EXPIRED = 361, "Validity period expired before delivery."
    TIMED_OUT_IN_SMSC = 362, "Timed out in the SMSC before delivery."
    SMSC_FAILED = 363, "SMSC operation failed."
    UNREACHABLE = 364, "Subscription temporarily unreachable."
    NOT_CONNECTED = 368, "Not connected to the SMSC."
    SMSC_SPECIFIC = 369, "SMSC-specific error."
    UNSPECIFIED = 370, "Unspecified error."
    # Spec 4.4 has no code for "stopped by the customer"; 371 is the one that says "message
    # cancelled", so a stopped or cancelled message reports it.
    TRANSMIT_ERROR = 371, "Transmit error towards the SMSC; message cancelled."
    ILLEGAL_LOGIN = 380, "Illegal login towards the operator."
    ILLEGAL_FUNCTION = 385, "Illegal function."
    BILLED_NOT_DELIVERED = 386, "Billed but not delivered."
    NOT_BILLED = 390, "Sent, but not billed."
    DATABASE = 650, "Database problem."
    NO_ROUTE = 651, "No route to subscriber."
    DATA_MISSING = 652, "Crucial system data missing."
    UNEXPECTED_DATA = 653, "Unknown or unexpected data."


_DR_DESCRIPTIONS: Final = {int(status): status.description for status in DrStatus}


def dr_description(code: int) -> str:
    """The description of a DR code; a code spec 4.4 does not know reads as unspecified."""
    return _DR_DESCRIPTIONS.get(code, DrStatus.UNSPECIFIED.description)


# ---------------------------------------------------------------------------------------------
# The lifecycle: every legal move of a message and of a part, as `(state, event) -> state`.
# A pair that is absent is illegal; the store refuses it (IllegalTransition) and writes nothing.
# A message is final once it reached a terminal state or was closed `sent` with a DR code (no
# status report came): no event moves a final message.


class MessageEvent(enum.StrEnum):
    CLAIM = "claim"  # the dispatcher hands it to a modem's worker
    REQUEUE = "requeue"  # a try that may work later, a modem not ready or capped, a restart
    RESCHEDULE = "reschedule"  # its send window opens later
    RELEASE = "release"  # its modem stayed down past failover_after: resent whole elsewhere
    ALL_SENT = "all_sent"  # the network took its last part
    DELIVER = "deliver"  # every part's status report says delivered
    FAIL = "fail"  # a part failed for good (rejected, attempts ran out, its report, a restart)
    EXPIRE = "expire"  # validity or send window ran out before it was sent
    CANCEL = "cancel"  # the customer stopped it (Management API, DELETE, cancel_sm)
    TIME_OUT = "time_out"  # no status report came before its validity ended: closed, DR 362
    REPLACE = "replace"  # an ESME's replace_sm gave it a new text, schedule or validity


class PartEvent(enum.StrEnum):
    SEND = "send"  # handed to the modem; after a crash its fate is unknown
    TAKEN = "taken"  # the network took it (a TP-MR)
    RETRY = "retry"  # the try failed, it may work later
    REJECT = "reject"  # failed for good when sent
    REPORT_DELIVERED = "report_delivered"
    REPORT_FAILED = "report_failed"
    RECOVER = "recover"  # in flight at a restart: queued again (policy resend)
    LOST = "lost"  # in flight at a restart: failed (policy fail)
    RELEASE = "release"  # its message is resent whole on another modem
    # Its message ended before the part went out: cancelled, expired, or failed by another
    # part. The part ends with it and is never sent.
    CANCEL = "cancel"
    EXPIRE = "expire"
    ABANDON = "abandon"


_Q, _SG, _ST = MessageState.QUEUED, MessageState.SENDING, MessageState.SENT
_D, _F, _E, _C = (
    MessageState.DELIVERED,
    MessageState.FAILED,
    MessageState.EXPIRED,
    MessageState.CANCELLED,
)

MESSAGE_TRANSITIONS: Final[Mapping[tuple[MessageState, MessageEvent], MessageState]] = {
    (_Q, MessageEvent.CLAIM): _SG,
    (_Q, MessageEvent.RESCHEDULE): _Q,
    (_Q, MessageEvent.RELEASE): _Q,
    (_Q, MessageEvent.EXPIRE): _E,
    (_Q, MessageEvent.CANCEL): _C,
    (_Q, MessageEvent.REPLACE): _Q,
    # A part that went out earlier fails by its status report while the rest waits.
    (_Q, MessageEvent.FAIL): _F,
    (_SG, MessageEvent.REQUEUE): _Q,
    (_SG, MessageEvent.ALL_SENT): _ST,
    (_SG, MessageEvent.EXPIRE): _E,
    (_SG, MessageEvent.FAIL): _F,
    # A status report may overtake the commit of its message's last part.
    (_SG, MessageEvent.DELIVER): _D,
    (_ST, MessageEvent.DELIVER): _D,
    (_ST, MessageEvent.FAIL): _F,
    (_ST, MessageEvent.TIME_OUT): _ST,
}

PART_TRANSITIONS: Final[Mapping[tuple[MessageState, PartEvent], MessageState]] = {
    (_Q, PartEvent.SEND): _SG,
    (_Q, PartEvent.RELEASE): _Q,
    (_Q, PartEvent.CANCEL): _C,
    (_Q, PartEvent.EXPIRE): _E,
    (_Q, PartEvent.ABANDON): _F,
    (_SG, PartEvent.TAKEN): _ST,
    (_SG, PartEvent.RETRY): _Q,
    (_SG, PartEvent.REJECT): _F,
    (_SG, PartEvent.RECOVER): _Q,
    (_SG, PartEvent.LOST): _F,
    (_ST, PartEvent.REPORT_DELIVERED): _D,
    (_ST, PartEvent.REPORT_FAILED): _F,
    (_ST, PartEvent.RELEASE): _Q,
    (_D, PartEvent.RELEASE): _Q,
    (_F, PartEvent.RELEASE): _Q,
}

# The event that ends a part not yet sent when its message reaches each final state.
UNSENT_PART_ENDS: Final[Mapping[MessageState, PartEvent]] = {
    _C: PartEvent.CANCEL,
    _E: PartEvent.EXPIRE,
    _F: PartEvent.ABANDON,
}

# Part states of a part the network already took, while its message is live: the message is
# bound to that part's modem, and a retry of the message must not send it again. (Once the
# message is final, a `failed` part may also be one that ended with it unsent: ABANDON.)
WENT_OUT: Final = frozenset({_ST, _D, _F})

# Whether the network ever took a part of the message (its send recorded a TP-MR), as SQL over
# a row of `messages`: a part may fail by its status report while the next is being sent,
# before the message's own sent_at is set, and a part taken on a modem the message failed over
# from counts too. Wider than WENT_OUT, which binds a live message to its modem: what an SMPP
# receipt and query_sm tell an undeliverable message (it reached the network) from a rejected
# one by (SMPP 3.4 section 5.2.28).
NETWORK_TOOK_A_PART_SQL: Final = (
    "EXISTS (SELECT 1 FROM parts WHERE message_id = messages.id AND sent_at IS NOT NULL)"
)


class IllegalTransition(Exception):
    """An event that the lifecycle does not allow in the current state; nothing was written."""

    def __init__(self, what: str, state: MessageState, event: str, *, final: bool = False):
        self.what = what
        self.state = state
        self.event = event
        self.final = final
        closed = " (final)" if final else ""
        super().__init__(f"{what}: no {event!r} from {state.value!r}{closed}")


def message_move(
    state: MessageState, event: MessageEvent, *, final: bool, what: str = "message"
) -> MessageState:
    """The state `event` takes a message to; IllegalTransition when the lifecycle forbids it."""
    target = None if final else MESSAGE_TRANSITIONS.get((state, event))
    if target is None:
        raise IllegalTransition(what, state, event, final=final)
    return target


def part_move(state: MessageState, event: PartEvent, *, what: str = "part") -> MessageState:
    """The state `event` takes a part to; IllegalTransition when the lifecycle forbids it."""
    target = PART_TRANSITIONS.get((state, event))
    if target is None:
        raise IllegalTransition(what, state, event)
    return target


def is_final(state: MessageState, dr_status: int | None) -> bool:
    """A final outcome: a terminal state, or `sent` closed with a DR code."""
    return state in TERMINAL_STATES or (state is MessageState.SENT and dr_status is not None)


# ---------------------------------------------------------------------------------------------
# The moments that decide what may happen to a queued message, each written once, in Python and
# in the SQL the store selects rows by, side by side: it is due (a dispatcher may claim it) once
# `due_at` has come, and past its validity (it is expired and no path sends, replaces or cancels
# it) once `expires_at` has come, whether or not the expiry sweep has come round to it yet.


class Moment(msgspec.Struct, frozen=True):
    """A column of a message's row holding a moment that has come at `now` when it is no later
    than `now`."""

    column: str

    def reached(self, at: float, now: float) -> bool:
        """Whether the moment `at` (this column's value) has come at `now`."""
        return at <= now

    def sql(self) -> str:
        """`reached` as an SQL condition on the column, with one `?` that binds `now`."""
        return f"{self.column} <= ?"


DUE: Final = Moment("due_at")
EXPIRY: Final = Moment("expires_at")


# ---------------------------------------------------------------------------------------------
# Records passed into and out of the store.


class DailyWindow(msgspec.Struct, frozen=True, kw_only=True):
    """A send window that opens every day from `first_day` to `last_day` (spec section 7.5).

    `opens`/`closes` are seconds after local midnight in `zone` (an IANA name or "+hh:mm").
    """

    zone: str
    first_day: str  # YYYY-MM-DD
    last_day: str
    opens: int
    closes: int


class NewMessage(msgspec.Struct, frozen=True, kw_only=True):
    """An accepted MT message, encoded and ready to queue."""

    id: str
    service_id: int
    batch_reference: str
    client_reference: str | None
    recipient: str
    originator: str
    originator_type: str
    content: str
    alphabet: str
    priority: int
    validity_minutes: int
    not_before: float
    expires_at: float
    status_report: bool
    report_to_customer: bool
    pid: int
    flash: bool
    created_at: float
    window: DailyWindow | None
    parts: tuple[EncodedPart, ...]
    # The SMPP data_coding of a submit_sm's text, kept for a replace_sm's; None from other doors.
    data_coding: int | None = None
    # A submit_sm's user_message_reference, which its receipt returns; None from other doors.
    user_message_reference: int | None = None


class DueMessage(msgspec.Struct, frozen=True, kw_only=True):
    """A queued message whose time has come, as the dispatcher routes it."""

    id: str
    service_id: int
    priority: int
    modem: str | None  # set when some part already went out on this modem: it must stay there
    expires_at: float
    window: DailyWindow | None
    recipient: str = ""  # for routing by recipient prefix


class ClaimedPart(msgspec.Struct, frozen=True, kw_only=True):
    index: int  # 1-based
    part: EncodedPart
    sent: bool


class Claim(msgspec.Struct, frozen=True, kw_only=True):
    """A message now in `sending` on `modem`, with what the worker needs to send it."""

    id: str
    modem: str
    recipient: str
    status_report: bool
    validity_minutes: int
    pid: int
    expires_at: float
    window: DailyWindow | None  # a daily send window it must also respect
    attempts: int
    parts: tuple[ClaimedPart, ...]


class PartSent(msgspec.Struct, frozen=True):
    """What the store did when the network took a part: `more`, whether the rest of the
    message may still be sent (False when a status report made it final meanwhile);
    `next_sending`, whether the next part asked for was marked `sending` in the same commit."""

    more: bool
    next_sending: bool


class Recovery(msgspec.Struct, frozen=True, kw_only=True):
    """What crash recovery did to the messages it found in `sending`, and which messages
    waiting to go it brought forward after the clock was set back."""

    requeued: list[str]
    failed: list[str]
    brought_forward: list[str]


class MessageRecord(msgspec.Struct, frozen=True, kw_only=True):
    """Columns of one message that pipeline code and tests inspect."""

    id: str
    state: MessageState
    modem: str | None
    error: str | None
    dr_status: int | None
    ext_status: str | None
    attempts: int
    priority: int
    not_before: float
    next_attempt_at: float
    expires_at: float
    sent_at: float | None
    done_at: float | None


class PartView(msgspec.Struct, kw_only=True):
    """One SMS part of a message, as `GET /api/messages/{id}` shows it."""

    index: int  # 1-based
    state: MessageState
    modem: str | None
    reference: int | None  # TP-MR the network gave the part
    attempts: int
    error: str | None
    sentAt: str | None  # ISO 8601 UTC


class EventView(msgspec.Struct, kw_only=True):
    """One state change or delivery event in a message's history."""

    at: str  # ISO 8601 UTC
    state: MessageState
    part: int | None
    detail: str


class MessageView(msgspec.Struct, kw_only=True):
    """A stored MT message with its parts and timestamps (ISO 8601 UTC, None until reached)."""

    messageId: str
    serviceId: int
    batchReference: str
    clientReference: str | None
    recipient: str
    originator: str
    state: MessageState
    modem: str | None
    error: str | None
    createdAt: str
    updatedAt: str
    sentAt: str | None
    doneAt: str | None
    parts: list[PartView]
    events: list[EventView] = msgspec.field(default_factory=list)  # oldest first


# ---------------------------------------------------------------------------------------------
# Received messages.


class InboundView(msgspec.Struct, kw_only=True):
    """An inbound (MO) message as `GET /api/inbound` shows it: the fields of spec section 3.1
    in their order (`timestamp`/`sctimestamp` as yyyyMMdd HH:mm:ss, Norwegian local time), then
    what the gateway adds (receiving modem, completeness, ISO 8601 UTC receipt time)."""

    messageid: str
    serviceid: int | None  # None: no keyword matched and the modem names no service
    servicename: str
    sno: str
    originator: str
    mcc: int
    mnc: int
    content: str
    command: str
    strippedcontent: str
    type: int
    timestamp: str
    sctimestamp: str
    sessionid: str
    modem: str
    complete: bool  # False: parts were still missing when the reassembly timeout ran out
    partsExpected: int
    partsReceived: int
    receivedAt: str
