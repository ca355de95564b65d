"""SMS TPDUs: SMS-SUBMIT (modem to network), SMS-DELIVER and SMS-STATUS-REPORT (network to modem).

Pure; no I/O, no clock (time stamps are parameters). Builders and strict parsers (a status
report's optional tail aside) for 3GPP TS 23.040 sections 9.2.2.1 (DELIVER), 9.2.2.2 (SUBMIT),
9.2.2.3 (STATUS-REPORT), 9.2.3.12 (TP-VP) and 9.2.3.16 (TP-UDL). TPDUs here carry no SMSC
address; see `split_sca`/`join_sca` for AT PDUs.
"""

from __future__ import annotations

import datetime as dt

import msgspec

from drivers.gsm.address import encode_address, encode_timestamp, read_address, read_timestamp
from drivers.gsm.dcs import check_octet
from drivers.gsm.errors import GsmError
from drivers.gsm.parts import EncodedPart
from drivers.gsm.reader import Reader
from drivers.gsm.septets import pack_septets, packed_length, unpack_septets
from drivers.gsm.udh import check_udh

# TP-MTI (TS 23.040 9.2.3.1), first-octet bits 1..0.
MTI_DELIVER = 0x00
MTI_SUBMIT = 0x01
MTI_STATUS_REPORT = 0x02
MTI_RESERVED = 0x03  # a receiver reads it as an SMS-DELIVER (9.2.3.1)
# First-octet flags (TS 23.040 9.2.3.2-9.2.3.5, 9.2.3.23, 9.2.3.26).
_RD = 0x04  # SUBMIT: reject duplicates
_MMS = 0x04  # DELIVER/STATUS-REPORT: set means no more messages are waiting
_SRR_SRI = 0x20  # SUBMIT: status report request; DELIVER: status report indication
_UDHI = 0x40
# TP-PID of a "short message type 0" (9.2.3.9): acknowledged, and its contents discarded.
_PID_TYPE_0 = 0x40
# TP-VPF (TS 23.040 9.2.3.3), first-octet bits 4..3.
_VPF_NONE, _VPF_ENHANCED, _VPF_RELATIVE, _VPF_ABSOLUTE = 0, 1, 2, 3

MAX_SEPTETS = 160
MAX_OCTETS = 140
_MINUTES_PER_DAY = 24 * 60
_MINUTES_PER_WEEK = 7 * _MINUTES_PER_DAY


def relative_validity(minutes: int) -> int:
    """Relative TP-VP for at least `minutes`: the next representable period, at most 63 weeks."""
    if minutes < 0:
        raise GsmError(f"validity must not be negative, not {minutes} minutes")
    if minutes <= 12 * 60:
        return max(0, -(-minutes // 5) - 1)
    if minutes <= _MINUTES_PER_DAY:
        return 143 + -(-(minutes - 12 * 60) // 30)
    if minutes <= 30 * _MINUTES_PER_DAY:
        return 166 + -(-minutes // _MINUTES_PER_DAY)
    return min(255, 192 + -(-minutes // _MINUTES_PER_WEEK))


def validity_period_minutes(vp: int) -> int:
    """The period a relative TP-VP value stands for, in minutes (spec 7.4 uses the same table)."""
    check_octet("TP-VP", vp)
    if vp <= 143:
        return (vp + 1) * 5
    if vp <= 167:
        return 12 * 60 + (vp - 143) * 30
    if vp <= 196:
        return (vp - 166) * _MINUTES_PER_DAY
    return (vp - 192) * _MINUTES_PER_WEEK


def _user_data(part: EncodedPart) -> tuple[int, bytes]:
    """TP-UDL and TP-UD for a part; with septets the header is padded to a septet boundary."""
    check_udh(part.udh)
    if part.is_septets:
        header_septets = (len(part.udh) * 8 + 6) // 7
        fill_bits = header_septets * 7 - len(part.udh) * 8
        length = header_septets + len(part.payload)
        if length > MAX_SEPTETS:
            raise GsmError(f"user data of {length} septets exceeds {MAX_SEPTETS}")
        return length, part.udh + pack_septets(part.payload, fill_bits)
    length = len(part.udh) + len(part.payload)
    if length > MAX_OCTETS:
        raise GsmError(f"user data of {length} octets exceeds {MAX_OCTETS}")
    return length, part.udh + part.payload


def _read_user_data(reader: Reader, dcs: int, udhi: bool) -> tuple[bytes, bytes]:
    """(udh, payload) from TP-UDL and TP-UD; the UD must have exactly the octets UDL implies."""
    septets = EncodedPart(dcs=dcs, udh=b"", payload=b"").is_septets
    length = reader.octet()
    if length > (MAX_SEPTETS if septets else MAX_OCTETS):
        raise GsmError(f"TP-UDL {length} is too long")
    data = reader.take(packed_length(length) if septets else length)
    udh = b""
    if udhi:
        if not data:
            raise GsmError("TP-UDHI is set but the user data is empty")
        udh = data[: data[0] + 1]
        if len(udh) != data[0] + 1:
            raise GsmError(f"UDHL {data[0]} overruns the user data")
    if not septets:
        return udh, data[len(udh) :]
    header_septets = (len(udh) * 8 + 6) // 7
    if header_septets > length:
        raise GsmError(f"a {len(udh)}-octet header does not fit in {length} septets")
    fill_bits = header_septets * 7 - len(udh) * 8
    return udh, unpack_septets(data[len(udh) :], length - header_septets, fill_bits)


def _expect_type(first_octet: int, mti: int, name: str) -> None:
    if first_octet & 0x03 != mti:
        raise GsmError(f"TP-MTI {first_octet & 0x03} is not an {name}")


class SmsSubmit(msgspec.Struct, frozen=True):
    """A parsed SMS-SUBMIT. `validity_until` holds an absolute TP-VP, which has no minutes."""

    message_reference: int
    destination: str
    pid: int
    dcs: int
    validity_minutes: int | None
    status_report: bool
    reject_duplicates: bool
    udh: bytes
    payload: bytes
    validity_until: dt.datetime | None = None

    @property
    def part(self) -> EncodedPart:
        return EncodedPart(dcs=self.dcs, udh=self.udh, payload=self.payload)


def build_submit(
    destination: str,
    part: EncodedPart,
    *,
    message_reference: int = 0,
    status_report: bool = False,
    validity_minutes: int | None = None,
    pid: int = 0,
    reject_duplicates: bool = False,
) -> bytes:
    """The SMS-SUBMIT TPDU (without the SMSC address) for one part."""
    check_octet("TP-MR", message_reference)
    check_octet("TP-PID", pid)
    check_octet("TP-DCS", part.dcs)
    length, user_data = _user_data(part)
    first = MTI_SUBMIT | (_RD if reject_duplicates else 0) | (_SRR_SRI if status_report else 0)
    first |= _UDHI if part.udh else 0
    validity = b""
    if validity_minutes is not None:
        first |= _VPF_RELATIVE << 3
        validity = bytes((relative_validity(validity_minutes),))
    header = bytes((first, message_reference)) + encode_address(destination)
    return header + bytes((pid, part.dcs)) + validity + bytes((length,)) + user_data


def _read_enhanced_validity(raw: bytes) -> int | None:
    """Minutes from an enhanced TP-VP (TS 23.040 9.2.3.12.3); seconds round up."""
    kind = raw[0] & 0x07
    if kind == 0:
        return None
    if kind == 1:
        return validity_period_minutes(raw[1])
    if kind == 2:
        return -(-raw[1] // 60)
    if kind == 3:
        hours, minutes, seconds = (((b & 0x0F) * 10) + (b >> 4) for b in raw[1:4])
        if any(b & 0x0F > 9 or b >> 4 > 9 for b in raw[1:4]):
            raise GsmError("enhanced TP-VP time is not decimal semi-octets")
        return hours * 60 + minutes + -(-seconds // 60)
    raise GsmError(f"enhanced TP-VP format {kind} is reserved")


def parse_submit(tpdu: bytes) -> SmsSubmit:
    """The SMS-SUBMIT in `tpdu` (no SMSC address); anything malformed raises GsmError."""
    reader = Reader(tpdu)
    first = reader.octet()
    _expect_type(first, MTI_SUBMIT, "SMS-SUBMIT")
    reference = reader.octet()
    destination = read_address(reader)
    pid = reader.octet()
    dcs = reader.octet()
    vpf = (first >> 3) & 0x03
    minutes: int | None = None
    until: dt.datetime | None = None
    if vpf == _VPF_RELATIVE:
        minutes = validity_period_minutes(reader.octet())
    elif vpf == _VPF_ENHANCED:
        minutes = _read_enhanced_validity(reader.take(7))
    elif vpf == _VPF_ABSOLUTE:
        until = read_timestamp(reader)
    udh, payload = _read_user_data(reader, dcs, bool(first & _UDHI))
    reader.finish()
    return SmsSubmit(
        reference,
        destination,
        pid,
        dcs,
        minutes,
        bool(first & _SRR_SRI),
        bool(first & _RD),
        udh,
        payload,
        until,
    )


class SmsDeliver(msgspec.Struct, frozen=True):
    """A parsed SMS-DELIVER: an incoming (MO, seen from the gateway) message part."""

    originator: str
    pid: int
    dcs: int
    timestamp: dt.datetime
    more_messages: bool
    status_report_indication: bool
    udh: bytes
    payload: bytes

    @property
    def part(self) -> EncodedPart:
        return EncodedPart(dcs=self.dcs, udh=self.udh, payload=self.payload)

    @property
    def to_discard(self) -> bool:
        """Whether the receiver must discard its contents (9.2.3.9: a short message type 0,
        which networks send to see whether a phone answers, the "silent SMS")."""
        return self.pid == _PID_TYPE_0


def build_deliver(
    originator: str,
    part: EncodedPart,
    *,
    timestamp: dt.datetime,
    pid: int = 0,
    more_messages: bool = False,
    status_report_indication: bool = False,
) -> bytes:
    """The SMS-DELIVER TPDU (without the SMSC address) that a network hands to a modem."""
    check_octet("TP-PID", pid)
    check_octet("TP-DCS", part.dcs)
    length, user_data = _user_data(part)
    first = MTI_DELIVER | (0 if more_messages else _MMS)
    first |= (_SRR_SRI if status_report_indication else 0) | (_UDHI if part.udh else 0)
    header = bytes((first,)) + encode_address(originator) + bytes((pid, part.dcs))
    return header + encode_timestamp(timestamp) + bytes((length,)) + user_data


def parse_deliver(tpdu: bytes) -> SmsDeliver:
    """The SMS-DELIVER in `tpdu` (no SMSC address); anything malformed raises GsmError. A
    reserved TP-MTI is read as an SMS-DELIVER, as TS 23.040 9.2.3.1 asks of a receiver."""
    reader = Reader(tpdu)
    first = reader.octet()
    if first & 0x03 != MTI_RESERVED:
        _expect_type(first, MTI_DELIVER, "SMS-DELIVER")
    originator = read_address(reader)
    pid = reader.octet()
    dcs = reader.octet()
    timestamp = read_timestamp(reader)
    udh, payload = _read_user_data(reader, dcs, bool(first & _UDHI))
    reader.finish()
    return SmsDeliver(
        originator,
        pid,
        dcs,
        timestamp,
        not first & _MMS,
        bool(first & _SRR_SRI),
        udh,
        payload,
    )


class SmsStatusReport(msgspec.Struct, frozen=True):
    """A parsed SMS-STATUS-REPORT; `status` is TP-ST (TS 23.040 9.2.3.15, 0x00 = delivered)."""

    message_reference: int
    recipient: str
    sc_timestamp: dt.datetime
    discharge_time: dt.datetime
    status: int


def build_status_report(
    message_reference: int,
    recipient: str,
    *,
    sc_timestamp: dt.datetime,
    discharge_time: dt.datetime,
    status: int,
) -> bytes:
    """The SMS-STATUS-REPORT TPDU for an earlier SMS-SUBMIT, without optional parameters."""
    check_octet("TP-MR", message_reference)
    check_octet("TP-ST", status)
    header = bytes((MTI_STATUS_REPORT | _MMS, message_reference)) + encode_address(recipient)
    times = encode_timestamp(sc_timestamp) + encode_timestamp(discharge_time)
    return header + times + bytes((status,))


def parse_status_report(tpdu: bytes) -> SmsStatusReport:
    """The SMS-STATUS-REPORT in `tpdu`; its fields up to TP-ST are read strictly, the rest not.

    TP-PI and the optional TP-PID, TP-DCS and TP-UD after it say nothing about the delivery,
    and what follows TP-ST is often not a whole set of them: a reserved TP-PI bit means octets
    follow that a receiver discards (TS 23.040 9.2.3.27), and a report kept on the (U)SIM is
    padded with FF to its 29-octet record (TS 31.102 4.2.32), which reads as a TP-PI announcing
    parameters that are not there. A report is not lost for either.
    """
    reader = Reader(tpdu)
    first = reader.octet()
    _expect_type(first, MTI_STATUS_REPORT, "SMS-STATUS-REPORT")
    reference = reader.octet()
    recipient = read_address(reader)
    sc_timestamp = read_timestamp(reader)
    discharge_time = read_timestamp(reader)
    status = reader.octet()
    return SmsStatusReport(reference, recipient, sc_timestamp, discharge_time, status)


def parse_received(tpdu: bytes) -> SmsDeliver | SmsStatusReport:
    """An SMS-DELIVER or SMS-STATUS-REPORT, told apart by TP-MTI (as listed by +CMGL/+CMGR)."""
    if tpdu[:1] and tpdu[0] & 0x03 == MTI_STATUS_REPORT:
        return parse_status_report(tpdu)
    return parse_deliver(tpdu)
