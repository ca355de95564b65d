"""Domain records of edgegw: the Puzzel send request and response, messages, parts and states.

Pure data: no I/O, no clock. Field names of the API structs follow the Puzzel SMSGW wire names
(spec section 2.1 and 2.2); the interfaces decode into these and encode from them.
"""

from __future__ import annotations

import enum

import msgspec


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


class OriginatorSettings(msgspec.Struct, kw_only=True):
    originator: str | None = None
    originatorType: str | None = None


class GasSettings(msgspec.Struct, kw_only=True):
    serviceCode: str | None = None
    description: str | None = None


class SendWindow(msgspec.Struct, kw_only=True):
    startDate: str | None = None
    startTime: str | None = None
    stopDate: str | None = None
    stopTime: str | None = None


class Parameter(msgspec.Struct, kw_only=True):
    key: str
    value: str


class Settings(msgspec.Struct, kw_only=True):
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


class MessageRequest(msgspec.Struct, kw_only=True):
    recipient: str | None = None
    content: str | None = None
    price: int | None = None
    clientReference: str | None = None
    settings: Settings | None = None
    priceXml: str | None = None


class SendRequest(msgspec.Struct, kw_only=True):
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


class SendResponse(msgspec.Struct, kw_only=True):
    batchReference: str
    messageStatus: list[MessageStatus]

    def refused_login(self) -> bool:
        """Every message was refused for the service's credentials (status 2): a failed login,
        whichever door the request came through."""
        return bool(self.messageStatus) and all(
            s.statusCode == StatusCode.ACCESS_ERROR for s in self.messageStatus
        )


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
    mcc: int | None
    mnc: int | None
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
