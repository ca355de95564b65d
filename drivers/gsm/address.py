"""TPDU address fields, the SMSC address in front of AT PDUs, and service-centre time stamps.

Pure; no I/O, no clock (times are parameters). Implements 3GPP TS 23.040 section 9.1.2.5
(address fields), 9.2.3.11 (TP-SCTS) and TS 24.011 8.2.5.1 / TS 27.005 3.1 (the SMSC prefix).
"""

from __future__ import annotations

import datetime as dt
import re

from drivers.gsm.alphabet import decode_gsm, encode_gsm
from drivers.gsm.errors import GsmError
from drivers.gsm.reader import Reader
from drivers.gsm.septets import pack_septets, unpack_septets

TOA_INTERNATIONAL = 0x91  # TON 001 international, NPI 0001 ISDN/E.164
TOA_UNKNOWN = 0x81  # TON 000 unknown, NPI 0001 ISDN/E.164
TOA_ALPHANUMERIC = 0xD0  # TON 101 alphanumeric (GSM 7-bit packed), NPI 0000
_TON_MASK = 0x70
_TON_INTERNATIONAL = 0x10
_TON_ALPHANUMERIC = 0x50
MAX_ADDRESS_DIGITS = 20  # TS 23.040 9.1.2.5: at most 10 octets of address value
MAX_ALPHANUMERIC = 11  # 10 octets hold 11 septets

# Semi-octet values 0xA..0xE stand for '*', '#', 'a', 'b', 'c' (TS 24.008 10.5.4.7).
_DIGITS = "0123456789*#abc"
_SEMI_OCTET = {c: v for v, c in enumerate(_DIGITS)}
_NUMERIC = re.compile(r"\+?[0-9*#]*")


def encode_digits(digits: str) -> bytes:
    """Semi-octets, low nibble first, with an F filler after an odd count."""
    values = []
    for index, char in enumerate(digits):
        value = _SEMI_OCTET.get(char)
        if value is None:
            raise GsmError(f"address character {char!r} at position {index} is not a digit")
        values.append(value)
    if len(values) % 2:
        values.append(0xF)
    return bytes(values[i] | values[i + 1] << 4 for i in range(0, len(values), 2))


def decode_digits(octets: bytes, count: int) -> str:
    """`count` digits from semi-octets; the unused nibble of an odd count must be F."""
    chars = []
    for octet in octets:
        chars.append(octet & 0x0F)
        chars.append(octet >> 4)
    if count % 2 and chars[count] != 0xF:
        raise GsmError("odd-length address lacks its F filler")
    if any(value > 0xE for value in chars[:count]):
        raise GsmError("address holds the F filler inside its digits")
    return "".join(_DIGITS[value] for value in chars[:count])


def _classify(number: str) -> tuple[int, str]:
    if number.startswith("+"):
        return TOA_INTERNATIONAL, number[1:]
    return TOA_UNKNOWN, number


def encode_address(address: str) -> bytes:
    """A TP-OA/TP-DA/TP-RA field: "+47..." is international, plain digits are unknown TON, and
    anything else is an alphanumeric name (GSM 7-bit packed)."""
    if _NUMERIC.fullmatch(address):
        toa, digits = _classify(address)
        if len(digits) > MAX_ADDRESS_DIGITS:
            raise GsmError(f"an address holds at most {MAX_ADDRESS_DIGITS} digits")
        return bytes((len(digits), toa)) + encode_digits(digits)
    septets = encode_gsm(address)
    if len(septets) > MAX_ALPHANUMERIC:
        raise GsmError(f"an alphanumeric address holds at most {MAX_ALPHANUMERIC} septets")
    packed = pack_septets(septets)
    # The length counts useful semi-octets: 7 bits per septet, rounded up to whole nibbles.
    return bytes(((len(septets) * 7 + 3) // 4, TOA_ALPHANUMERIC)) + packed


def read_address(reader: Reader) -> str:
    """Read one address field (length in semi-octets, TOA, value)."""
    length = reader.octet()
    toa = reader.octet()
    if length > MAX_ADDRESS_DIGITS:
        raise GsmError(f"address length {length} exceeds {MAX_ADDRESS_DIGITS} semi-octets")
    value = reader.take((length + 1) // 2)
    if toa & _TON_MASK == _TON_ALPHANUMERIC:
        return decode_gsm(unpack_septets(value, length * 4 // 7))
    digits = decode_digits(value, length)
    return "+" + digits if toa & _TON_MASK == _TON_INTERNATIONAL else digits


def split_sca(pdu: bytes) -> tuple[str, bytes]:
    """Split an AT PDU into the SMSC number ("" when absent) and the TPDU after it."""
    reader = Reader(pdu)
    length = reader.octet()
    if length == 0:
        return "", reader.rest()
    if length > 11:
        raise GsmError(f"SMSC address length {length} exceeds 11 octets")
    toa = reader.octet()
    value = reader.take(length - 1)
    digits = len(value) * 2 - (1 if value[-1:] and value[-1] >> 4 == 0xF else 0)
    number = decode_digits(value, digits)
    if number and toa & _TON_MASK == _TON_INTERNATIONAL:
        number = "+" + number
    return number, reader.rest()


def join_sca(smsc: str, tpdu: bytes) -> bytes:
    """Put the SMSC address (length in octets, TOA, digits) in front of a TPDU; "" -> 00."""
    if not smsc:
        return b"\x00" + tpdu
    toa, digits = _classify(smsc)
    if not digits or len(digits) > MAX_ADDRESS_DIGITS:
        raise GsmError(f"an SMSC number holds 1..{MAX_ADDRESS_DIGITS} digits")
    value = encode_digits(digits)
    return bytes((len(value) + 1, toa)) + value + tpdu


def _bcd(value: int) -> int:
    """Two decimal digits as a swapped semi-octet pair."""
    return (value % 10) << 4 | value // 10


def _from_bcd(octet: int) -> int:
    low, high = octet & 0x0F, octet >> 4
    if low > 9 or high > 9:
        raise GsmError(f"time stamp octet {octet:02X} is not two decimal digits")
    return low * 10 + high


def encode_timestamp(timestamp: dt.datetime) -> bytes:
    """TP-SCTS: local time of the stamp's own zone, the zone in quarter hours with a sign bit."""
    offset = timestamp.utcoffset()
    if offset is None:
        raise GsmError("a TPDU time stamp needs a time zone")
    quarters, rest = divmod(int(offset.total_seconds()), 15 * 60)
    if rest or not -79 <= quarters <= 79:
        raise GsmError(f"time zone offset {offset} is not a whole quarter hour within ±19:45")
    if not 1969 <= timestamp.year <= 2068:
        raise GsmError(f"year {timestamp.year} has no two-digit TP-SCTS form")
    zone = _bcd(abs(quarters)) | (0x08 if quarters < 0 else 0)
    fields = (timestamp.year % 100, timestamp.month, timestamp.day, timestamp.hour)
    return bytes(map(_bcd, (*fields, timestamp.minute, timestamp.second))) + bytes((zone,))


def read_timestamp(reader: Reader) -> dt.datetime:
    """Read a 7-octet TP-SCTS; two-digit years pivot as in POSIX (69..99 -> 19xx)."""
    raw = reader.take(7)
    year, month, day, hour, minute, second = map(_from_bcd, raw[:6])
    sign = -1 if raw[6] & 0x08 else 1
    quarters = sign * _from_bcd(raw[6] & 0xF7)
    try:
        zone = dt.timezone(dt.timedelta(minutes=15 * quarters))
        year += 1900 if year >= 69 else 2000
        return dt.datetime(year, month, day, hour, minute, second, tzinfo=zone)
    except ValueError as exc:
        raise GsmError(f"time stamp {raw.hex().upper()} is not a valid date and time") from exc
