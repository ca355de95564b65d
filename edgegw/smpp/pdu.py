"""The SMPP 3.4 PDU codec: every PDU an SMSC receives or sends, as typed structs, to and from bytes,
and `SmppDecoder`, which cuts a byte stream into PDUs under a `command_length` cap.

Pure (sans-IO): no trio, sockets or clocks. SMPP v3.4 Issue 1.2 sections 3.1-3.2 (PDU format,
C-octet strings, TLVs) and 4.1-4.12 (the body of each PDU). Field layouts are tables, read by one
bounded reader that fails on under- or over-read.
"""

from __future__ import annotations

import enum
import struct
from typing import ClassVar, Final

import msgspec

from edgegw.smpp.constants import HEADER_LENGTH, RESPONSE_BIT, CommandId, CommandStatus
from edgegw.smpp.errors import BrokenFrame, EncodeError, InvalidField, InvalidPdu
from edgegw.smpp.tlv import TLV_LENGTHS, Tlvs

__all__ = [
    "NEED_DATA",
    "AlertNotification",
    "BindReceiver",
    "BindReceiverResp",
    "BindTransceiver",
    "BindTransceiverResp",
    "BindTransmitter",
    "BindTransmitterResp",
    "CancelSm",
    "CancelSmResp",
    "DataSm",
    "DataSmResp",
    "DeliverSm",
    "DeliverSmResp",
    "EnquireLink",
    "EnquireLinkResp",
    "GenericNack",
    "MultiDestination",
    "NeedData",
    "Outbind",
    "Pdu",
    "QuerySm",
    "QuerySmResp",
    "ReplaceSm",
    "ReplaceSmResp",
    "SmppDecoder",
    "SubmitMulti",
    "SubmitMultiResp",
    "SubmitSm",
    "SubmitSmResp",
    "Unbind",
    "UnbindResp",
    "UnsuccessfulDelivery",
    "decode_pdu",
    "encode",
    "response_class",
]

_HEADER = struct.Struct(">IIII")
_TLV_HEADER = struct.Struct(">HH")
_U32 = struct.Struct(">I")

MAX_SHORT_MESSAGE = 254  # SMPP 3.4 section 5.2.21: sm_length 0..254
DEST_FLAG_SME = 1  # SMPP 3.4 section 5.2.25: an SME address follows
DEST_FLAG_DISTRIBUTION_LIST = 2  # ... a distribution list name follows


class NeedData(enum.Enum):
    NEED_DATA = "NEED_DATA"


NEED_DATA: Final = NeedData.NEED_DATA


class Kind(enum.Enum):
    U8 = 1
    CSTRING = 3  # size: maximum octets including the NUL (SMPP 3.4 section 3.1)
    SHORT_MESSAGE = 4  # sm_length then that many octets
    DESTINATIONS = 5  # submit_multi: number_of_dests then dest_address entries
    UNSUCCESSFUL = 6  # submit_multi_resp: no_unsuccess then unsuccess_sme entries


# (attribute, kind, size, status answered when the field is bad)
Field = tuple[str, Kind, int, CommandStatus]

_S = CommandStatus


def _c(name: str, size: int, status: CommandStatus = _S.ESME_RINVPARLEN) -> Field:
    return (name, Kind.CSTRING, size, status)


def _u8(name: str) -> Field:
    # Any octet is a value; such a field is only ever cut short, which the body's length
    # answers (ESME_RINVCMDLEN), so its status is never read.
    return (name, Kind.U8, 1, _S.ESME_RINVCMDLEN)


def _source(size: int = 21) -> tuple[Field, ...]:
    return (
        _u8("source_addr_ton"),
        _u8("source_addr_npi"),
        _c("source_addr", size, _S.ESME_RINVSRCADR),
    )


def _dest(size: int = 21) -> tuple[Field, ...]:
    return (
        _u8("dest_addr_ton"),
        _u8("dest_addr_npi"),
        _c("destination_addr", size, _S.ESME_RINVDSTADR),
    )


_BIND_FIELDS = (
    _c("system_id", 16, _S.ESME_RINVSYSID),
    _c("password", 9, _S.ESME_RINVPASWD),
    _c("system_type", 13, _S.ESME_RINVSYSTYP),
    _u8("interface_version"),
    _u8("addr_ton"),
    _u8("addr_npi"),
    _c("address_range", 41),
)
_SERVICE_TYPE = _c("service_type", 6, _S.ESME_RINVSERTYP)
_MESSAGE_ID = _c("message_id", 65, _S.ESME_RINVMSGID)
_SCHEDULE = _c("schedule_delivery_time", 17, _S.ESME_RINVSCHED)
_VALIDITY = _c("validity_period", 17, _S.ESME_RINVEXPIRY)
_SHORT_MESSAGE: Field = ("short_message", Kind.SHORT_MESSAGE, 1, _S.ESME_RINVMSGLEN)
_SM_TAIL = (
    _u8("esm_class"),
    _u8("protocol_id"),
    _u8("priority_flag"),
    _SCHEDULE,
    _VALIDITY,
    _u8("registered_delivery"),
    _u8("replace_if_present_flag"),
    _u8("data_coding"),
    _u8("sm_default_msg_id"),
    _SHORT_MESSAGE,
)


class Pdu(msgspec.Struct, kw_only=True):
    """One SMPP PDU: the header fields every PDU has; subclasses add their body."""

    sequence_number: int
    command_status: int = 0

    command_id: ClassVar[CommandId]
    fields: ClassVar[tuple[Field, ...]] = ()
    has_tlvs: ClassVar[bool] = False


class _Response(Pdu, kw_only=True):
    """A response: SMPP 3.4 leaves its body out when command_status is not ESME_ROK."""


class MultiDestination(msgspec.Struct, frozen=True):
    """A submit_multi dest_address (SMPP 3.4 section 4.5.1.1): an SME address (dest_flag 1) or,
    with dest_flag 2, a distribution list whose name is `address`."""

    dest_flag: int
    ton: int
    npi: int
    address: str


class UnsuccessfulDelivery(msgspec.Struct, frozen=True):
    """A submit_multi_resp unsuccess_sme entry (SMPP 3.4 section 4.5.2.1)."""

    ton: int
    npi: int
    address: str
    error_status_code: int


class GenericNack(Pdu, kw_only=True):
    command_id = CommandId.GENERIC_NACK


class _Bind(Pdu, kw_only=True):
    system_id: str = ""
    password: str = ""
    system_type: str = ""
    interface_version: int = 0x34
    addr_ton: int = 0
    addr_npi: int = 0
    address_range: str = ""

    fields = _BIND_FIELDS


class BindTransmitter(_Bind, kw_only=True):
    command_id = CommandId.BIND_TRANSMITTER


class BindReceiver(_Bind, kw_only=True):
    command_id = CommandId.BIND_RECEIVER


class BindTransceiver(_Bind, kw_only=True):
    command_id = CommandId.BIND_TRANSCEIVER


class _BindResp(_Response, kw_only=True):
    system_id: str = ""
    tlvs: Tlvs = ()

    fields = (_c("system_id", 16, _S.ESME_RINVSYSID),)
    has_tlvs = True


class BindTransmitterResp(_BindResp, kw_only=True):
    command_id = CommandId.BIND_TRANSMITTER_RESP


class BindReceiverResp(_BindResp, kw_only=True):
    command_id = CommandId.BIND_RECEIVER_RESP


class BindTransceiverResp(_BindResp, kw_only=True):
    command_id = CommandId.BIND_TRANSCEIVER_RESP


class Outbind(Pdu, kw_only=True):
    system_id: str = ""
    password: str = ""

    command_id = CommandId.OUTBIND
    fields = _BIND_FIELDS[:2]


class Unbind(Pdu, kw_only=True):
    command_id = CommandId.UNBIND


class UnbindResp(_Response, kw_only=True):
    command_id = CommandId.UNBIND_RESP


class EnquireLink(Pdu, kw_only=True):
    command_id = CommandId.ENQUIRE_LINK


class EnquireLinkResp(_Response, kw_only=True):
    command_id = CommandId.ENQUIRE_LINK_RESP


class _ShortMessage(Pdu, kw_only=True):
    """The body shared by submit_sm and deliver_sm (SMPP 3.4 sections 4.4.1 and 4.6.1)."""

    service_type: str = ""
    source_addr_ton: int = 0
    source_addr_npi: int = 0
    source_addr: str = ""
    dest_addr_ton: int = 0
    dest_addr_npi: int = 0
    destination_addr: str = ""
    esm_class: int = 0
    protocol_id: int = 0
    priority_flag: int = 0
    schedule_delivery_time: str = ""
    validity_period: str = ""
    registered_delivery: int = 0
    replace_if_present_flag: int = 0
    data_coding: int = 0
    sm_default_msg_id: int = 0
    short_message: bytes = b""
    tlvs: Tlvs = ()

    fields = (_SERVICE_TYPE, *_source(), *_dest(), *_SM_TAIL)
    has_tlvs = True


class SubmitSm(_ShortMessage, kw_only=True):
    command_id = CommandId.SUBMIT_SM


class DeliverSm(_ShortMessage, kw_only=True):
    command_id = CommandId.DELIVER_SM


class SubmitSmResp(_Response, kw_only=True):
    message_id: str = ""

    command_id = CommandId.SUBMIT_SM_RESP
    fields = (_MESSAGE_ID,)


class DeliverSmResp(_Response, kw_only=True):
    message_id: str = ""

    command_id = CommandId.DELIVER_SM_RESP
    fields = (_MESSAGE_ID,)


class SubmitMulti(Pdu, kw_only=True):
    service_type: str = ""
    source_addr_ton: int = 0
    source_addr_npi: int = 0
    source_addr: str = ""
    dest_addresses: tuple[MultiDestination, ...] = ()
    esm_class: int = 0
    protocol_id: int = 0
    priority_flag: int = 0
    schedule_delivery_time: str = ""
    validity_period: str = ""
    registered_delivery: int = 0
    replace_if_present_flag: int = 0
    data_coding: int = 0
    sm_default_msg_id: int = 0
    short_message: bytes = b""
    tlvs: Tlvs = ()

    command_id = CommandId.SUBMIT_MULTI
    fields = (
        _SERVICE_TYPE,
        *_source(),
        ("dest_addresses", Kind.DESTINATIONS, 254, _S.ESME_RINVNUMDESTS),
        *_SM_TAIL,
    )
    has_tlvs = True


class SubmitMultiResp(_Response, kw_only=True):
    message_id: str = ""
    unsuccess_smes: tuple[UnsuccessfulDelivery, ...] = ()

    command_id = CommandId.SUBMIT_MULTI_RESP
    fields = (_MESSAGE_ID, ("unsuccess_smes", Kind.UNSUCCESSFUL, 254, _S.ESME_RINVNUMDESTS))


class DataSm(Pdu, kw_only=True):
    service_type: str = ""
    source_addr_ton: int = 0
    source_addr_npi: int = 0
    source_addr: str = ""
    dest_addr_ton: int = 0
    dest_addr_npi: int = 0
    destination_addr: str = ""
    esm_class: int = 0
    registered_delivery: int = 0
    data_coding: int = 0
    tlvs: Tlvs = ()

    command_id = CommandId.DATA_SM
    fields = (
        _SERVICE_TYPE,
        *_source(65),
        *_dest(65),
        _u8("esm_class"),
        _u8("registered_delivery"),
        _u8("data_coding"),
    )
    has_tlvs = True


class DataSmResp(_Response, kw_only=True):
    message_id: str = ""
    tlvs: Tlvs = ()

    command_id = CommandId.DATA_SM_RESP
    fields = (_MESSAGE_ID,)
    has_tlvs = True


class QuerySm(Pdu, kw_only=True):
    message_id: str = ""
    source_addr_ton: int = 0
    source_addr_npi: int = 0
    source_addr: str = ""

    command_id = CommandId.QUERY_SM
    fields = (_MESSAGE_ID, *_source())


class QuerySmResp(_Response, kw_only=True):
    message_id: str = ""
    final_date: str = ""
    message_state: int = 0
    error_code: int = 0

    command_id = CommandId.QUERY_SM_RESP
    fields = (
        _MESSAGE_ID,
        _c("final_date", 17),
        _u8("message_state"),
        _u8("error_code"),
    )


class CancelSm(Pdu, kw_only=True):
    service_type: str = ""
    message_id: str = ""
    source_addr_ton: int = 0
    source_addr_npi: int = 0
    source_addr: str = ""
    dest_addr_ton: int = 0
    dest_addr_npi: int = 0
    destination_addr: str = ""

    command_id = CommandId.CANCEL_SM
    fields = (_SERVICE_TYPE, _MESSAGE_ID, *_source(), *_dest())


class CancelSmResp(_Response, kw_only=True):
    command_id = CommandId.CANCEL_SM_RESP


class ReplaceSm(Pdu, kw_only=True):
    message_id: str = ""
    source_addr_ton: int = 0
    source_addr_npi: int = 0
    source_addr: str = ""
    schedule_delivery_time: str = ""
    validity_period: str = ""
    registered_delivery: int = 0
    sm_default_msg_id: int = 0
    short_message: bytes = b""

    command_id = CommandId.REPLACE_SM
    fields = (
        _MESSAGE_ID,
        *_source(),
        _SCHEDULE,
        _VALIDITY,
        _u8("registered_delivery"),
        _u8("sm_default_msg_id"),
        _SHORT_MESSAGE,
    )


class ReplaceSmResp(_Response, kw_only=True):
    command_id = CommandId.REPLACE_SM_RESP


class AlertNotification(Pdu, kw_only=True):
    source_addr_ton: int = 0
    source_addr_npi: int = 0
    source_addr: str = ""
    esme_addr_ton: int = 0
    esme_addr_npi: int = 0
    esme_addr: str = ""
    tlvs: Tlvs = ()

    command_id = CommandId.ALERT_NOTIFICATION
    fields = (
        *_source(65),
        _u8("esme_addr_ton"),
        _u8("esme_addr_npi"),
        _c("esme_addr", 65),
    )
    has_tlvs = True


PDU_CLASSES: dict[int, type[Pdu]] = {
    cls.command_id: cls
    for cls in (
        GenericNack,
        BindTransmitter,
        BindTransmitterResp,
        BindReceiver,
        BindReceiverResp,
        BindTransceiver,
        BindTransceiverResp,
        Outbind,
        Unbind,
        UnbindResp,
        EnquireLink,
        EnquireLinkResp,
        SubmitSm,
        SubmitSmResp,
        DeliverSm,
        DeliverSmResp,
        SubmitMulti,
        SubmitMultiResp,
        DataSm,
        DataSmResp,
        QuerySm,
        QuerySmResp,
        CancelSm,
        CancelSmResp,
        ReplaceSm,
        ReplaceSmResp,
        AlertNotification,
    )
}


def response_class(command_id: int) -> type[Pdu] | None:
    """The response PDU type of a request, or None (responses, outbind, alert_notification)."""
    if command_id & RESPONSE_BIT:
        return None
    return PDU_CLASSES.get(command_id | RESPONSE_BIT)


# ---------------------------------------------------------------------------------------------
# Encoding


def _encode_cstring(name: str, value: str, size: int) -> bytes:
    try:
        raw = value.encode("latin-1")
    except UnicodeEncodeError as exc:
        raise EncodeError(_S.ESME_RSYSERR, f"{name} holds a character outside Latin-1") from exc
    if b"\0" in raw or len(raw) >= size:
        raise EncodeError(_S.ESME_RSYSERR, f"{name} must be at most {size - 1} octets, no NUL")
    return raw + b"\0"


def _encode_u8(name: str, value: int) -> bytes:
    if not 0 <= value <= 0xFF:
        raise EncodeError(_S.ESME_RSYSERR, f"{name} {value} does not fit in one octet")
    return bytes((value,))


def _encode_field(pdu: Pdu, field: Field, out: list[bytes]) -> None:
    name, kind, size, _ = field
    value = getattr(pdu, name)
    if kind is Kind.U8:
        out.append(_encode_u8(name, value))
    elif kind is Kind.CSTRING:
        out.append(_encode_cstring(name, value, size))
    elif kind is Kind.SHORT_MESSAGE:
        if len(value) > MAX_SHORT_MESSAGE:
            raise EncodeError(_S.ESME_RINVMSGLEN, f"short_message of {len(value)} octets")
        out.append(bytes((len(value),)))
        out.append(value)
    elif kind is Kind.DESTINATIONS:
        if not 1 <= len(value) <= size:
            raise EncodeError(_S.ESME_RINVNUMDESTS, f"{len(value)} destinations")
        out.append(bytes((len(value),)))
        for dest in value:
            out.append(_encode_u8("dest_flag", dest.dest_flag))
            if dest.dest_flag == DEST_FLAG_SME:
                out.append(_encode_u8("dest_addr_ton", dest.ton))
                out.append(_encode_u8("dest_addr_npi", dest.npi))
            out.append(_encode_cstring("destination_addr", dest.address, 21))
    else:  # Kind.UNSUCCESSFUL
        if len(value) > size:
            raise EncodeError(_S.ESME_RINVNUMDESTS, f"{len(value)} unsuccessful destinations")
        out.append(bytes((len(value),)))
        for sme in value:
            out.append(_encode_u8("dest_addr_ton", sme.ton))
            out.append(_encode_u8("dest_addr_npi", sme.npi))
            out.append(_encode_cstring("destination_addr", sme.address, 21))
            out.append(_U32.pack(sme.error_status_code))


def encode(pdu: Pdu) -> bytes:
    """The PDU as it goes on the wire. Raises EncodeError for a value its field cannot hold."""
    body: list[bytes] = []
    if not (pdu.command_status and isinstance(pdu, _Response)):
        for field in pdu.fields:
            _encode_field(pdu, field, body)
        if pdu.has_tlvs:
            for tag, value in pdu.tlvs:  # type: ignore[attr-defined]
                if not 0 <= tag <= 0xFFFF or len(value) > 0xFFFF:
                    raise EncodeError(_S.ESME_RINVPARLEN, f"TLV {tag:#06x} cannot be encoded")
                body.append(_TLV_HEADER.pack(tag, len(value)))
                body.append(value)
    payload = b"".join(body)
    try:
        header = _HEADER.pack(
            HEADER_LENGTH + len(payload), pdu.command_id, pdu.command_status, pdu.sequence_number
        )
    except struct.error as exc:
        raise EncodeError(
            _S.ESME_RSYSERR, "command_status or sequence_number out of range"
        ) from exc
    return header + payload


# ---------------------------------------------------------------------------------------------
# Decoding


class _BodyReader:
    """Reads the fields of one PDU body and never past it (dnspython's `wirebase` idea)."""

    __slots__ = ("_command_id", "_data", "_end", "_pos", "_sequence_number")

    def __init__(self, data: bytes, command_id: int, sequence_number: int, start: int = 0) -> None:
        self._data = data
        self._pos = start
        self._end = len(data)
        self._command_id = command_id
        self._sequence_number = sequence_number

    def _field_error(self, status: CommandStatus, message: str) -> InvalidField:
        return InvalidField(
            status,
            message,
            command_id=self._command_id,
            sequence_number=self._sequence_number,
        )

    def short_body(self, name: str) -> InvalidPdu:
        return InvalidPdu(
            _S.ESME_RINVCMDLEN,
            f"the body ends inside {name}",
            command_id=self._command_id,
            sequence_number=self._sequence_number,
        )

    @property
    def remaining(self) -> int:
        return self._end - self._pos

    def u8(self, name: str) -> int:
        if self._pos >= self._end:
            raise self.short_body(name)
        value = self._data[self._pos]
        self._pos += 1
        return value

    def u32(self, name: str) -> int:
        if self._pos + 4 > self._end:
            raise self.short_body(name)
        (value,) = _U32.unpack_from(self._data, self._pos)
        self._pos += 4
        return int(value)

    def cstring(self, name: str, size: int, status: CommandStatus) -> str:
        start = self._pos
        limit = min(start + size, self._end)
        nul = self._data.find(b"\0", start, limit)
        if nul < 0:
            if limit == self._end and self._end - start < size:
                raise self.short_body(name)
            raise self._field_error(status, f"{name} longer than {size - 1} octets")
        self._pos = nul + 1
        return self._data[start:nul].decode("latin-1")

    def octets(self, name: str, count: int) -> bytes:
        if self._pos + count > self._end:
            raise self.short_body(name)
        value = self._data[self._pos : self._pos + count]
        self._pos += count
        return value

    def short_message(self, status: CommandStatus) -> bytes:
        length = self.u8("sm_length")
        if length > MAX_SHORT_MESSAGE:
            raise self._field_error(status, f"sm_length {length} exceeds {MAX_SHORT_MESSAGE}")
        if self._pos + length > self._end:
            raise self._field_error(status, f"sm_length {length} runs past the PDU")
        return self.octets("short_message", length)

    def destinations(self, size: int, status: CommandStatus) -> tuple[MultiDestination, ...]:
        count = self.u8("number_of_dests")
        if not 1 <= count <= size:
            raise self._field_error(status, f"number_of_dests {count}")
        dests: list[MultiDestination] = []
        for _ in range(count):
            flag = self.u8("dest_flag")
            if flag == DEST_FLAG_SME:
                ton, npi = self.u8("dest_addr_ton"), self.u8("dest_addr_npi")
                address = self.cstring("destination_addr", 21, _S.ESME_RINVDSTADR)
            elif flag == DEST_FLAG_DISTRIBUTION_LIST:
                ton = npi = 0
                address = self.cstring("dl_name", 21, _S.ESME_RINVDLNAME)
            else:
                raise self._field_error(_S.ESME_RINVDESTFLAG, f"dest_flag {flag}")
            dests.append(MultiDestination(flag, ton, npi, address))
        return tuple(dests)

    def unsuccessful(self, size: int, status: CommandStatus) -> tuple[UnsuccessfulDelivery, ...]:
        count = self.u8("no_unsuccess")
        if count > size:
            raise self._field_error(status, f"no_unsuccess {count}")
        return tuple(
            UnsuccessfulDelivery(
                self.u8("dest_addr_ton"),
                self.u8("dest_addr_npi"),
                self.cstring("destination_addr", 21, _S.ESME_RINVDSTADR),
                self.u32("error_status_code"),
            )
            for _ in range(count)
        )

    def tlvs(self) -> Tlvs:
        found: list[tuple[int, bytes]] = []
        data = self._data
        while self._pos < self._end:
            if self._end - self._pos < 4:
                raise self._field_error(_S.ESME_RINVOPTPARSTREAM, "a TLV header is cut short")
            tag, length = _TLV_HEADER.unpack_from(data, self._pos)
            start = self._pos + 4
            if start + length > self._end:
                raise self._field_error(
                    _S.ESME_RINVOPTPARSTREAM, f"TLV {tag:#06x} runs past the PDU"
                )
            bounds = TLV_LENGTHS.get(tag)
            if bounds is not None and not bounds[0] <= length <= bounds[1]:
                raise self._field_error(_S.ESME_RINVPARLEN, f"TLV {tag:#06x} has length {length}")
            found.append((tag, data[start : start + length]))
            self._pos = start + length
        return tuple(found)


def _read_field(reader: _BodyReader, field: Field) -> object:
    name, kind, size, status = field
    if kind is Kind.CSTRING:
        return reader.cstring(name, size, status)
    if kind is Kind.U8:
        return reader.u8(name)
    if kind is Kind.SHORT_MESSAGE:
        return reader.short_message(status)
    if kind is Kind.DESTINATIONS:
        return reader.destinations(size, status)
    return reader.unsuccessful(size, status)


def _decode_short_message(
    cls: type[_ShortMessage], command_status: int, sequence_number: int, body: bytes
) -> Pdu:
    """submit_sm and deliver_sm, the hot path: the fields of `cls.fields` read in one pass with
    no reader calls. It only reads a well-formed body; anything else (a C-string without its
    NUL in reach, a body cut short, an sm_length too long) goes to `decode_by_table`, so the
    errors are the table's, written once (a test checks both paths agree)."""
    find, end = body.find, len(body)
    try:
        # service_type (6), source TON/NPI, source_addr (21), dest TON/NPI, destination (21),
        # esm_class, protocol_id, priority_flag, schedule (17), validity (17), then five octets:
        # registered_delivery, replace_if_present_flag, data_coding, sm_default_msg_id,
        # sm_length.
        nul = find(0, 0, 6)
        if nul < 0:
            raise IndexError
        service_type = body[:nul].decode("latin-1")
        pos = nul + 3
        source_ton, source_npi = body[nul + 1], body[nul + 2]
        nul = find(0, pos, pos + 21)
        if nul < 0:
            raise IndexError
        source_addr = body[pos:nul].decode("latin-1")
        pos = nul + 3
        dest_ton, dest_npi = body[nul + 1], body[nul + 2]
        nul = find(0, pos, pos + 21)
        if nul < 0:
            raise IndexError
        destination_addr = body[pos:nul].decode("latin-1")
        esm_class, protocol_id, priority_flag = body[nul + 1], body[nul + 2], body[nul + 3]
        pos = nul + 4
        nul = find(0, pos, pos + 17)
        if nul < 0:
            raise IndexError
        schedule = body[pos:nul].decode("latin-1") if nul > pos else ""
        pos = nul + 1
        nul = find(0, pos, pos + 17)
        if nul < 0:
            raise IndexError
        validity = body[pos:nul].decode("latin-1") if nul > pos else ""
        registered, replace, coding, default_id, length = body[nul + 1 : nul + 6]
        pos = nul + 6
        if length > MAX_SHORT_MESSAGE or pos + length > end:
            raise IndexError
    except (IndexError, ValueError):
        # Too few octets to unpack raise ValueError; the table path names what is wrong.
        return decode_by_table(cls, command_status, sequence_number, body)
    tlvs: Tlvs = ()
    if pos + length < end:
        tlvs = _BodyReader(body, cls.command_id, sequence_number, pos + length).tlvs()
    return cls(
        sequence_number=sequence_number,
        command_status=command_status,
        service_type=service_type,
        source_addr_ton=source_ton,
        source_addr_npi=source_npi,
        source_addr=source_addr,
        dest_addr_ton=dest_ton,
        dest_addr_npi=dest_npi,
        destination_addr=destination_addr,
        esm_class=esm_class,
        protocol_id=protocol_id,
        priority_flag=priority_flag,
        schedule_delivery_time=schedule,
        validity_period=validity,
        registered_delivery=registered,
        replace_if_present_flag=replace,
        data_coding=coding,
        sm_default_msg_id=default_id,
        short_message=body[pos : pos + length],
        tlvs=tlvs,
    )


def decode_pdu(command_id: int, command_status: int, sequence_number: int, body: bytes) -> Pdu:
    """One PDU from its header fields and body. Raises InvalidPdu (unknown command id, body
    length that does not match the fields) or InvalidField (a field the command cannot take)."""
    cls = PDU_CLASSES.get(command_id)
    if cls is None:
        raise InvalidPdu(
            _S.ESME_RINVCMDID,
            f"unknown command_id {command_id:#010x}",
            command_id=command_id,
            sequence_number=sequence_number,
        )
    if not body and issubclass(cls, _Response):
        # SMPP 3.4 4.4.2 and siblings: no body with an error status; some peers also drop it
        # from an ESME_ROK deliver_sm_resp, whose message_id is unused anyway.
        return cls(sequence_number=sequence_number, command_status=command_status)
    if cls is SubmitSm or cls is DeliverSm:
        return _decode_short_message(cls, command_status, sequence_number, body)
    return decode_by_table(cls, command_status, sequence_number, body)


def decode_by_table(cls: type[Pdu], command_status: int, sequence_number: int, body: bytes) -> Pdu:
    """Any PDU body read by walking its field table."""
    command_id = cls.command_id
    reader = _BodyReader(body, command_id, sequence_number)
    values = {field[0]: _read_field(reader, field) for field in cls.fields}
    if cls.has_tlvs:
        values["tlvs"] = reader.tlvs()
    elif reader.remaining:
        raise InvalidPdu(
            _S.ESME_RINVCMDLEN,
            f"{reader.remaining} octets after the last field",
            command_id=command_id,
            sequence_number=sequence_number,
        )
    return cls(sequence_number=sequence_number, command_status=command_status, **values)


class SmppDecoder:
    """Cuts a byte stream into PDUs: `receive_data(bytes)` (b"" at end of stream), then
    `next_pdu()` until it returns NEED_DATA. A header the stream cannot recover from leaves
    the decoder broken: every later call raises the same BrokenFrame."""

    def __init__(self, max_pdu_bytes: int = 65536) -> None:
        if max_pdu_bytes < HEADER_LENGTH:
            raise ValueError(f"max_pdu_bytes must be at least {HEADER_LENGTH}")
        self.max_pdu_bytes = max_pdu_bytes
        self._buffer = bytearray()
        self._ended = False
        self._broken: BrokenFrame | None = None

    @property
    def buffered(self) -> int:
        """Octets received and not yet returned as a PDU."""
        return len(self._buffer)

    def receive_data(self, data: bytes | bytearray) -> None:
        if self._ended and data:
            raise RuntimeError("receive_data after the end of the stream")
        if not data:
            self._ended = True
        self._buffer += data

    def _break(self, message: str, command_id: int = 0, sequence_number: int = 0) -> BrokenFrame:
        self._broken = BrokenFrame(
            _S.ESME_RINVCMDLEN,
            message,
            command_id=command_id,
            sequence_number=sequence_number,
        )
        return self._broken

    def next_pdu(self) -> Pdu | NeedData:
        """The next whole PDU, or NEED_DATA. Raises a SmppError for a bad PDU (the decoder
        stays usable unless it is a BrokenFrame)."""
        if self._broken is not None:
            raise self._broken
        buffer = self._buffer
        if len(buffer) < HEADER_LENGTH:
            if self._ended and buffer:
                raise self._break("the stream ended inside a PDU header")
            return NEED_DATA
        length, command_id, command_status, sequence_number = _HEADER.unpack_from(buffer)
        if length < HEADER_LENGTH:
            raise self._break(
                f"command_length {length} is shorter than a header", command_id, sequence_number
            )
        if length > self.max_pdu_bytes:
            raise self._break(
                f"command_length {length} exceeds the limit of {self.max_pdu_bytes}",
                command_id,
                sequence_number,
            )
        if len(buffer) < length:
            if self._ended:
                raise self._break("the stream ended inside a PDU", command_id, sequence_number)
            return NEED_DATA
        body = bytes(buffer[HEADER_LENGTH:length])
        del buffer[:length]
        return decode_pdu(command_id, command_status, sequence_number, body)
