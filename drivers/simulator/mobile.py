"""What a sending phone and its network make of a text: the SMS-DELIVER TPDUs a modem receives.

Pure, no I/O, no clock (the service centre time stamp is a parameter). 3GPP TS 23.040 sections
9.2.2.1 (SMS-DELIVER), 9.2.3.24.1 and 9.2.3.24.8 (concatenation, 8-bit and 16-bit references).
"""

from __future__ import annotations

import datetime as dt

from drivers.gsm import (
    Alphabet,
    EncodedPart,
    GsmError,
    ParsingType,
    build_deliver,
    encode_message,
)

# A 16-bit reference header: UDHL, IEI 08, IEDL 4, reference (2 octets), total, sequence.
CONCAT_16BIT_UDH_LENGTH = 7
IEI_CONCAT_16BIT = 0x08
USER_DATA_OCTETS = 140
MAX_PARTS = 255
_ESC = 0x1B


def mobile_parts(
    text: str,
    *,
    reference: int = 0,
    concat_16bit: bool = False,
) -> list[EncodedPart]:
    """The parts a phone sends `text` as (GSM 7-bit, or UCS-2 when a character is not in the
    GSM alphabet); concatenated with an 8- or 16-bit `reference`."""
    message = encode_message(
        text, parsing=ParsingType.AUTO_DETECT, reference=reference % 256, max_parts=MAX_PARTS
    )
    if not concat_16bit or len(message.parts) == 1:
        return list(message.parts)
    if not 0 <= reference <= 0xFFFF:
        raise GsmError(f"a 16-bit concatenation reference is 0..65535, not {reference}")
    data = b"".join(part.payload for part in message.parts)
    dcs = message.parts[0].dcs
    chunks = _split(data, message.alphabet, _capacity(message.alphabet))
    if len(chunks) > MAX_PARTS:
        raise GsmError(f"{len(chunks)} parts do not fit a concatenation header")
    return [
        EncodedPart(dcs=dcs, udh=_udh_16bit(reference, len(chunks), seq), payload=chunk)
        for seq, chunk in enumerate(chunks, start=1)
    ]


def deliver_tpdus(
    originator: str,
    parts: list[EncodedPart],
    *,
    timestamp: dt.datetime,
    pid: int = 0,
) -> list[bytes]:
    """One SMS-DELIVER TPDU a part; TP-MMS says whether more parts are still to come."""
    last = len(parts) - 1
    return [
        build_deliver(
            originator,
            part,
            timestamp=timestamp,
            pid=pid,
            more_messages=index < last,
        )
        for index, part in enumerate(parts)
    ]


def _udh_16bit(reference: int, total: int, seq: int) -> bytes:
    return bytes((CONCAT_16BIT_UDH_LENGTH - 1, IEI_CONCAT_16BIT, 4)) + bytes(
        (reference >> 8, reference & 0xFF, total, seq)
    )


def _capacity(alphabet: Alphabet) -> int:
    """Payload units (septets or octets) beside a 16-bit concatenation header."""
    if alphabet is Alphabet.GSM7:
        header_septets = (CONCAT_16BIT_UDH_LENGTH * 8 + 6) // 7
        return USER_DATA_OCTETS * 8 // 7 - header_septets
    room = USER_DATA_OCTETS - CONCAT_16BIT_UDH_LENGTH
    return room - room % 2 if alphabet is Alphabet.UCS2 else room


def _split(data: bytes, alphabet: Alphabet, capacity: int) -> list[bytes]:
    """Chunks of at most `capacity`; an escape pair or a UTF-16 surrogate pair stays whole, as
    TS 23.038 section 6.2.1.1 and the UCS-2 rules of TS 23.040 ask of a sender."""
    chunks: list[bytes] = []
    start = 0
    while start < len(data):
        end = min(start + capacity, len(data))
        if end < len(data):
            if alphabet is Alphabet.GSM7 and data[end - 1] == _ESC:
                end -= 1
            elif alphabet is Alphabet.UCS2 and 0xD8 <= data[end - 2] <= 0xDB:
                end -= 2
        chunks.append(data[start:end])
        start = end
    return chunks
