"""The encoded form of one SMS part: what the text codec produces and TPDU builders consume.

Pure data (3GPP TS 23.040 section 9.2.3.24 for the UDH, TS 23.038 for the DCS); no I/O.
"""

from __future__ import annotations

import msgspec


class EncodedPart(msgspec.Struct, frozen=True, kw_only=True):
    """One part of a message, ready for a TPDU or for SMPP `short_message`.

    `udh` is the whole user data header including its length octet (UDHL), or empty.
    `payload` is the user data after the header: for the GSM 7-bit alphabet one septet value
    (0..127) per byte, unpacked; for 8-bit data and UCS-2 the octets themselves.
    """

    dcs: int
    udh: bytes
    payload: bytes

    @property
    def is_septets(self) -> bool:
        """True when `payload` holds GSM 7-bit septets (TS 23.038 section 4)."""
        return _is_gsm7(self.dcs)


def _is_gsm7(dcs: int) -> bool:
    group = dcs & 0xF0
    if group < 0x80:
        # General data coding (00xx) and automatic deletion (01xx): bit 5 = compressed (treated as
        # 8-bit by us), bits 3..2 = alphabet, whose reserved value 11 means GSM 7-bit.
        return not dcs & 0x20 and (dcs & 0x0C) in (0x00, 0x0C)
    if group == 0xF0:
        return not dcs & 0x04
    # Reserved groups 1000..1011 and message waiting 1100/1101; 1110 is UCS-2. TS 23.038
    # section 4: "any reserved codings shall be assumed to be the GSM 7 bit default alphabet".
    return group != 0xE0
