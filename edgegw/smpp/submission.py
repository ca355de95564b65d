"""What a submit_sm or submit_multi asks for, as one typed `Submission`: addresses checked, text
decoded from its data_coding, the UDH found (esm_class UDHI or sar_* TLVs), the application ports
and message class asked for, times made absolute.

Pure; no I/O and no clock (`now` is a parameter). SMPP 3.4 sections 4.4.1 and 4.5.1 (fields),
5.2.12 (esm_class), 5.2.17 (registered_delivery), 5.2.19 (data_coding), 5.3.2.1
(dest_addr_subunit), 5.3.2.20/5.3.2.21 (source_port, destination_port), 7.1.1 (time format).
"""

from __future__ import annotations

import calendar
import datetime as dt
import enum

import msgspec

from drivers.gsm import (
    Alphabet,
    GsmError,
    decode_gsm,
    gsm_length,
    is_gsm,
    message_class,
    part_capacity,
    port_ie,
    port_info,
)
from drivers.gsm.udh import CONCAT_UDH_LENGTH
from edgegw.smpp.constants import (
    ESM_FEATURE_UDHI,
    ESM_MODE_MASK,
    ESM_MODE_TRANSACTION,
    ESM_TYPE_MASK,
    RECEIPT_MASK,
    CommandId,
    CommandStatus,
    Tag,
)
from edgegw.smpp.errors import InvalidField
from edgegw.smpp.pdu import DEST_FLAG_SME, SubmitMulti, SubmitSm, UnsuccessfulDelivery
from edgegw.smpp.tlv import Tlvs, tlv_int, tlv_value

__all__ = [
    "MAX_PARTS",
    "Address",
    "ReceiptRequest",
    "Submission",
    "format_time",
    "parse_time",
    "submission_from_submit_multi",
    "submission_from_submit_sm",
    "tp_dcs",
]

_S = CommandStatus

MAX_PARTS = 6  # spec section 7.1: at most six concatenated parts

# SMPP 3.4 section 5.2.5 (TON 0..6) and 5.2.6 (NPI values).
_VALID_TON = frozenset(range(7))
_VALID_NPI = frozenset({0, 1, 3, 4, 6, 8, 9, 10, 14, 18})
TON_ALPHANUMERIC = 5
# The gateway sends to international numbers only (as sendMessages takes them): a destination is
# one (TON 1) or digits with TON 0, which most ESMEs send for the same. A national, network,
# subscriber or abbreviated number has no country code to make it one.
_DESTINATION_TON = frozenset({0, 1})
_MAX_ALPHANUMERIC = 11  # TS 23.040 9.1.2.5: eleven GSM characters fit the address field
_MAX_DIGITS = 20


class Address(msgspec.Struct, frozen=True):
    """An SMPP address: type of number, numbering plan indicator and the address itself."""

    ton: int
    npi: int
    address: str


class ReceiptRequest(enum.IntEnum):
    """registered_delivery bits 1..0, SMPP 3.4 section 5.2.17."""

    NONE = 0
    FINAL = 1  # a receipt on delivery success or failure
    FAILURE = 2  # a receipt on failure only


class Submission(msgspec.Struct, frozen=True, kw_only=True):
    """One submitted short message, ready for the gateway's submit pipeline.

    `text` is the decoded text for data_coding 0, 1, 3, 8 and 0xF0-0xF3 (None for 8-bit data:
    2, 4, 0xF4-0xF7); `payload` is the user data after the UDH exactly as it came, so that the
    parts of a concatenated message can be joined before decoding. `udh` is a whole header
    with its UDHL, from the message itself (esm_class UDHI) or built from sar_* TLVs; empty
    when there is none.
    `ports` are the (destination, originator) application ports of destination_port and
    source_port, to go in every part's UDH; `message_class` the TP-DCS class (0..3) that
    dest_addr_subunit asks for, None to leave the data_coding's.
    `source.address` is empty when the ESME leaves the originator to the service.
    """

    source: Address
    destinations: tuple[Address, ...]
    data_coding: int
    text: str | None
    payload: bytes
    udh: bytes = b""
    message_payload: bool = False
    receipt: ReceiptRequest = ReceiptRequest.NONE
    validity: dt.datetime | None = None
    schedule: dt.datetime | None = None
    priority: int = 0
    protocol_id: int = 0
    service_type: str = ""
    esm_class: int = 0
    user_message_reference: int | None = None
    ports: tuple[int, int] | None = None
    message_class: int | None = None


# registered_delivery bits 1..0 -> ReceiptRequest; 3 is refused before the lookup.
_RECEIPTS = (ReceiptRequest.NONE, ReceiptRequest.FINAL, ReceiptRequest.FAILURE)


def _refuse(status: CommandStatus, message: str, command_id: int, seq: int) -> InvalidField:
    return InvalidField(status, message, command_id=command_id, sequence_number=seq)


# ---------------------------------------------------------------------------------------------
# Times, SMPP 3.4 section 7.1.1


def _add_months(moment: dt.datetime, months: int) -> dt.datetime:
    total = moment.month - 1 + months
    year, month = moment.year + total // 12, total % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


def parse_time(text: str, now: dt.datetime) -> dt.datetime | None:
    """An SMPP time field as an aware UTC datetime; "" is None. `YYMMDDhhmmsstnnp` with p `+`
    or `-` is absolute (nn quarter hours from UTC), with p `R` relative to `now`. Raises
    ValueError for anything else."""
    if not text:
        return None
    if len(text) != 16 or not text[:15].isdigit() or not text.isascii():
        raise ValueError(f"{text!r} is not YYMMDDhhmmsstnnp")
    yy, mo, dd, hh, mi, ss = (int(text[i : i + 2]) for i in range(0, 12, 2))
    tenths, quarters, sign = int(text[12]), int(text[13:15]), text[15]
    if sign == "R":
        moment = _add_months(now.astimezone(dt.UTC), yy * 12 + mo)
        return moment + dt.timedelta(days=dd, hours=hh, minutes=mi, seconds=ss)
    if sign not in "+-" or quarters > 48:
        raise ValueError(f"{text!r} has no valid UTC offset")
    offset = dt.timedelta(minutes=15 * quarters) * (1 if sign == "+" else -1)
    local = dt.datetime(2000 + yy, mo, dd, hh, mi, ss, tenths * 100_000, tzinfo=dt.timezone(offset))
    return local.astimezone(dt.UTC)


def format_time(moment: dt.datetime) -> str:
    """An absolute SMPP time in UTC (`YYMMDDhhmmss t00+`), as query_sm_resp final_date uses."""
    utc = moment.astimezone(dt.UTC)
    return utc.strftime("%y%m%d%H%M%S") + f"{utc.microsecond // 100_000}00+"


# ---------------------------------------------------------------------------------------------
# Fields


def _digits(address: str) -> bool:
    number = address.removeprefix("+")
    return 0 < len(number) <= _MAX_DIGITS and number.isdigit()


def _check_destination(ton: int, npi: int, address: str) -> CommandStatus | None:
    if ton not in _DESTINATION_TON:
        return _S.ESME_RINVDSTTON
    if npi not in _VALID_NPI:
        return _S.ESME_RINVDSTNPI
    if not _digits(address):
        return _S.ESME_RINVDSTADR
    return None


def _check_source(ton: int, npi: int, address: str) -> CommandStatus | None:
    if ton not in _VALID_TON:
        return _S.ESME_RINVSRCTON
    if npi not in _VALID_NPI:
        return _S.ESME_RINVSRCNPI
    if not address or _digits(address):
        return None
    # Many ESMEs send an alphanumeric sender with TON 0; accept it when it would fit.
    if ton in (0, TON_ALPHANUMERIC) and len(address) <= _MAX_ALPHANUMERIC:
        return None
    return _S.ESME_RINVSRCADR


# data_coding (SMPP 3.4 5.2.19) -> the TP-DCS (TS 23.038 4) to send with; None lets the text
# follow the service's parsing type. SMPP's two "octet unspecified" codings are 8-bit data on
# the air (TP-DCS 0x02 would announce GSM 7-bit text); 1111xxxx is TS 23.038's own group with a
# message class (0xF0 a flash SMS) and goes out as it came.
_TP_DCS: dict[int, int | None] = {
    0x00: None,
    0x01: None,
    0x02: 0x04,
    0x03: None,
    0x04: 0x04,
    0x08: 0x08,
    **{coding: coding for coding in range(0xF0, 0xF8)},
}


def tp_dcs(data_coding: int) -> int | None:
    """The TP-DCS a submission's data_coding asks for, or None when its text may follow the
    service's parsing type (SMSC default alphabet, IA5, Latin-1)."""
    return _TP_DCS[data_coding]


def _decode_text(data_coding: int, payload: bytes) -> str | None:
    """The text of `payload` per SMPP 3.4 section 5.2.19; None for octet data. Raises
    ValueError for a coding we do not carry (`_TP_DCS` names those we do) or bytes it cannot
    hold."""
    if data_coding not in _TP_DCS:
        raise ValueError(f"data_coding {data_coding:#04x} is not supported")
    if data_coding in (0x00, 0xF0, 0xF1, 0xF2, 0xF3):
        # Spec section 2.7: GSM default alphabet, one unpacked septet per octet.
        return decode_gsm(payload)
    if data_coding == 0x01:
        return payload.decode("ascii")
    if data_coding == 0x03:
        return payload.decode("latin-1")
    if data_coding == 0x08:
        if len(payload) % 2:
            raise ValueError("UCS-2 text with an odd number of octets")
        # A surrogate pair may be cut between the parts of a concatenated message.
        return payload.decode("utf-16-be", errors="surrogatepass")
    return None  # 8-bit data: 0x02, 0x04, 0xF4-0xF7


def _fits(
    data_coding: int, text: str | None, payload: bytes, udh: bytes, ports: tuple[int, int] | None
) -> bool:
    """Whether the message fits one SMS beside a caller's UDH, or six parts without one, with
    room in each for the IE of any application `ports`."""
    alphabet = Alphabet.UCS2 if data_coding == 0x08 else Alphabet.DATA8
    units = len(payload)
    if text is not None and data_coding != 0x08:
        alphabet = Alphabet.GSM7
        if data_coding not in (0x00, 0xF0, 0xF1, 0xF2, 0xF3):
            if is_gsm(text):
                units = gsm_length(text)
            else:
                alphabet = Alphabet.UCS2
                units = len(text.encode("utf-16-be", errors="surrogatepass"))
    elements = len(port_ie(*ports)) if ports else 0
    if udh:
        return units <= part_capacity(alphabet, len(udh) + elements)
    return units <= MAX_PARTS * part_capacity(alphabet, CONCAT_UDH_LENGTH + elements)


def _ports(tlvs: Tlvs, udh: bytes) -> tuple[int, int] | None:
    """(destination, originator) from destination_port and source_port, the originator 0
    when only the destination is given; None without them. LookupError for a source_port
    alone, ValueError when the ESME's own UDH already holds a port IE."""
    destination = tlv_int(tlvs, Tag.DESTINATION_PORT)
    originator = tlv_int(tlvs, Tag.SOURCE_PORT)
    if destination is None:
        if originator is not None:
            raise LookupError("source_port without destination_port")
        return None
    if port_info(udh) is not None:
        raise ValueError("destination_port beside a UDH with its own application port IE")
    return destination, originator or 0


def _message_class(tlvs: Tlvs, data_coding: int) -> int | None:
    """The message class dest_addr_subunit asks for (1 MS display, 2 mobile equipment, 3 SIM,
    4 external unit: classes 0..3), None for 0 (unknown) or none. ValueError for a reserved
    subunit or one that contradicts the class of a data_coding 0xF0-0xF7."""
    subunit = tlv_int(tlvs, Tag.DEST_ADDR_SUBUNIT)
    if not subunit:
        return None
    if subunit > 4:
        raise ValueError(f"dest_addr_subunit {subunit} is reserved")
    wanted = subunit - 1
    coding = tp_dcs(data_coding)
    coded = None if coding is None else message_class(coding)
    if coded is not None and coded != wanted:
        raise ValueError(f"dest_addr_subunit {subunit} against data_coding {data_coding:#04x}")
    return wanted


def _sar_udh(tlvs: Tlvs) -> bytes | None:
    """A 16-bit reference concatenation UDH (TS 23.040 9.2.3.24.8) from the sar_* TLVs, or
    None without them. LookupError when only some are present, ValueError for a bad segment."""
    reference = tlv_int(tlvs, Tag.SAR_MSG_REF_NUM)
    total = tlv_int(tlvs, Tag.SAR_TOTAL_SEGMENTS)
    seq = tlv_int(tlvs, Tag.SAR_SEGMENT_SEQNUM)
    if reference is None and total is None and seq is None:
        return None
    if reference is None or total is None or seq is None:
        raise LookupError("sar_msg_ref_num, sar_total_segments and sar_segment_seqnum go together")
    if not (total >= 1 and 1 <= seq <= total):
        raise ValueError(f"sar segment {seq} of {total}")
    return bytes((6, 8, 4, reference >> 8, reference & 0xFF, total, seq))


def _build(
    pdu: SubmitSm | SubmitMulti, destinations: tuple[Address, ...], now: dt.datetime
) -> Submission:
    """The fields submit_sm and submit_multi share (the same names in both PDUs), checked."""
    cid, seq = pdu.command_id, pdu.sequence_number

    def refuse(status: CommandStatus, message: str) -> InvalidField:
        return _refuse(status, message, cid, seq)

    ton, npi, address = pdu.source_addr_ton, pdu.source_addr_npi, pdu.source_addr
    problem = _check_source(ton, npi, address)
    if problem is not None:
        raise refuse(problem, f"source address {address!r} TON {ton}")
    if pdu.esm_class & ESM_TYPE_MASK:
        raise refuse(_S.ESME_RINVESMCLASS, f"esm_class {pdu.esm_class:#04x} asks for an ack")
    if pdu.esm_class & ESM_MODE_MASK == ESM_MODE_TRANSACTION:
        # The transaction mode (SMPP 3.4 5.2.12) answers once the handset has the message,
        # which the gateway, answering as it stores the message, cannot do.
        raise refuse(_S.ESME_RINVESMCLASS, f"esm_class {pdu.esm_class:#04x}: transaction mode")
    if pdu.priority_flag > 3:
        raise refuse(_S.ESME_RINVPRTFLG, f"priority_flag {pdu.priority_flag}")
    if pdu.registered_delivery & RECEIPT_MASK == 3:
        raise refuse(_S.ESME_RINVREGDLVFLG, "registered_delivery bits 1..0 = 3 are reserved")
    if pdu.replace_if_present_flag > 1:
        raise refuse(_S.ESME_RINVREPFLAG, f"replace_if_present {pdu.replace_if_present_flag}")
    try:
        schedule = parse_time(pdu.schedule_delivery_time, now)
    except ValueError as exc:
        raise refuse(_S.ESME_RINVSCHED, str(exc)) from None
    try:
        validity = parse_time(pdu.validity_period, now)
    except ValueError as exc:
        raise refuse(_S.ESME_RINVEXPIRY, str(exc)) from None
    if validity is not None and validity <= max(now, schedule or now):
        raise refuse(_S.ESME_RINVEXPIRY, "the validity period ends before delivery can start")

    message, tlvs = pdu.short_message, pdu.tlvs
    payload_tlv = tlv_value(tlvs, Tag.MESSAGE_PAYLOAD) if tlvs else None
    if payload_tlv is not None:
        if message:
            # SMPP 3.4 5.3.2.32: with message_payload, sm_length is zero.
            raise refuse(_S.ESME_RINVMSGLEN, "both short_message and message_payload")
        message = payload_tlv
    udh = b""
    if pdu.esm_class & ESM_FEATURE_UDHI:
        if not message or message[0] + 1 > len(message):
            raise refuse(_S.ESME_RINVESMCLASS, "UDHI set but no whole UDH in the message")
        udh, message = message[: message[0] + 1], message[message[0] + 1 :]
    else:
        try:
            udh = (_sar_udh(tlvs) if tlvs else None) or b""
        except LookupError as exc:
            raise refuse(_S.ESME_RMISSINGOPTPARAM, str(exc)) from None
        except ValueError as exc:
            raise refuse(_S.ESME_RINVOPTPARAMVAL, str(exc)) from None
    try:
        text = _decode_text(pdu.data_coding, message)
    except (ValueError, GsmError) as exc:
        # SMPP 3.4 has no "invalid data_coding" status; RSUBMITFAIL is its generic refusal.
        raise refuse(_S.ESME_RSUBMITFAIL, f"data_coding {pdu.data_coding}: {exc}") from None
    try:
        ports = _ports(tlvs, udh) if tlvs else None
        wanted_class = _message_class(tlvs, pdu.data_coding) if tlvs else None
    except LookupError as exc:
        raise refuse(_S.ESME_RMISSINGOPTPARAM, str(exc)) from None
    except ValueError as exc:
        raise refuse(_S.ESME_RINVOPTPARAMVAL, str(exc)) from None
    if not _fits(pdu.data_coding, text, message, udh, ports):
        raise refuse(_S.ESME_RINVMSGLEN, "the message is too long")
    return Submission(
        source=Address(ton, npi, address),
        destinations=destinations,
        data_coding=pdu.data_coding,
        text=text,
        payload=message,
        udh=udh,
        message_payload=payload_tlv is not None,
        receipt=_RECEIPTS[pdu.registered_delivery & RECEIPT_MASK],
        validity=validity,
        schedule=schedule,
        priority=pdu.priority_flag,
        protocol_id=pdu.protocol_id,
        service_type=pdu.service_type,
        esm_class=pdu.esm_class,
        user_message_reference=tlv_int(tlvs, Tag.USER_MESSAGE_REFERENCE) if tlvs else None,
        ports=ports,
        message_class=wanted_class,
    )


def submission_from_submit_sm(pdu: SubmitSm, now: dt.datetime) -> Submission:
    """The Submission a submit_sm asks for, or InvalidField with the status to answer."""
    problem = _check_destination(pdu.dest_addr_ton, pdu.dest_addr_npi, pdu.destination_addr)
    if problem is not None:
        raise _refuse(
            problem,
            f"destination {pdu.destination_addr!r} TON {pdu.dest_addr_ton}",
            CommandId.SUBMIT_SM,
            pdu.sequence_number,
        )
    destination = Address(pdu.dest_addr_ton, pdu.dest_addr_npi, pdu.destination_addr)
    return _build(pdu, (destination,), now)


def submission_from_submit_multi(
    pdu: SubmitMulti, now: dt.datetime
) -> tuple[Submission, tuple[UnsuccessfulDelivery, ...]]:
    """The Submission for the valid SME destinations of a submit_multi, and the destinations
    refused one by one (distribution lists, bad addresses) for its unsuccess_sme list. When
    none is valid, InvalidField carries the first refusal."""
    valid: list[Address] = []
    refused: list[UnsuccessfulDelivery] = []
    for dest in pdu.dest_addresses:
        if dest.dest_flag != DEST_FLAG_SME:
            refused.append(UnsuccessfulDelivery(0, 0, dest.address, _S.ESME_RCNTSUBDL))
            continue
        problem = _check_destination(dest.ton, dest.npi, dest.address)
        if problem is None:
            valid.append(Address(dest.ton, dest.npi, dest.address))
        else:
            refused.append(UnsuccessfulDelivery(dest.ton, dest.npi, dest.address, problem))
    if not valid:
        status = CommandStatus(refused[0].error_status_code) if refused else _S.ESME_RINVNUMDESTS
        raise _refuse(status, "no valid destination", CommandId.SUBMIT_MULTI, pdu.sequence_number)
    return _build(pdu, tuple(valid), now), tuple(refused)
