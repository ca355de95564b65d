"""TP-Data-Coding-Scheme: which alphabet a DCS means, and the DCS for an alphabet and class.

Pure; no I/O. Implements 3GPP TS 23.038 section 4 (SMS data coding scheme); the septet test is the
one in `drivers.gsm.parts` so that every user of a part agrees on it.
"""

from __future__ import annotations

import enum

from drivers.gsm.errors import GsmError
from drivers.gsm.parts import EncodedPart


class Alphabet(enum.Enum):
    GSM7 = "GSM7"
    DATA8 = "DATA8"
    UCS2 = "UCS2"


# TS 23.038 section 4, general data coding, bits 3..2; keyed by the member's value, since an
# Enum member hashes in Python code (every message's DCS is looked up here).
_GENERAL_CODING = {"GSM7": 0x00, "DATA8": 0x04, "UCS2": 0x08}
_HAS_CLASS = 0x10  # bit 4 "has message class"; bits 1..0 the class (00: class 0, flash)


def dcs_alphabet(dcs: int) -> Alphabet:
    """The alphabet a DCS announces; compressed codings count as 8-bit data, reserved ones as
    the GSM 7-bit alphabet (TS 23.038 section 4, as a receiving entity must)."""
    check_octet("TP-DCS", dcs)
    if EncodedPart(dcs=dcs, udh=b"", payload=b"").is_septets:
        return Alphabet.GSM7
    group = dcs & 0xF0
    general = group < 0x80 and not dcs & 0x20
    if (general and dcs & 0x0C == 0x08) or group == 0xE0:
        return Alphabet.UCS2
    return Alphabet.DATA8


def check_sendable(dcs: int) -> None:
    """GsmError for a TP-DCS that a sending entity must not use (TS 23.038 section 4): a
    reserved coding group (1000..1011), the reserved alphabet 11 of the general data coding
    groups, or a reserved bit set (bit 2 of the message waiting groups, bit 3 of the data
    coding/message class group)."""
    check_octet("TP-DCS", dcs)
    group = dcs & 0xF0
    if group < 0x80:
        reserved = dcs & 0x0C == 0x0C
    elif group < 0xC0:
        reserved = True
    elif group < 0xF0:
        reserved = bool(dcs & 0x04)
    else:
        reserved = bool(dcs & 0x08)
    if reserved:
        raise GsmError(f"TP-DCS {dcs:02X} is a reserved coding (TS 23.038 section 4)")


def dcs_for(alphabet: Alphabet) -> int:
    """The general-group DCS for an alphabet, with no message class."""
    return _GENERAL_CODING[alphabet._value_]


def with_class(dcs: int, message_class: int) -> int:
    """`dcs` changed to carry `message_class` (0 flash, 1 ME, 2 SIM, 3 TE), keeping its alphabet."""
    check_octet("TP-DCS", dcs)
    if not 0 <= message_class <= 3:
        raise GsmError(f"message class must be 0, 1, 2 or 3, not {message_class}")
    group = dcs & 0xF0
    if group < 0x80:
        return (dcs & ~0x03) | _HAS_CLASS | message_class
    if group == 0xF0:
        return (dcs & ~0x03) | message_class
    raise GsmError(f"TP-DCS {dcs:02X} has no message class to set")


def message_class(dcs: int) -> int | None:
    """The message class a TP-DCS announces (TS 23.038 section 4: bit 4 of the general data
    coding groups, or the 1111 group), or None when it announces none."""
    check_octet("TP-DCS", dcs)
    group = dcs & 0xF0
    if (group < 0x80 and dcs & _HAS_CLASS) or group == 0xF0:
        return dcs & 0x03
    return None


def check_octet(name: str, value: int) -> None:
    if not 0 <= value <= 0xFF:
        raise GsmError(f"{name} must be 0..255, not {value}")
