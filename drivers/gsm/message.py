"""Text to encoded SMS parts (alphabet choice, sanitising, concatenation) and parts back to text.

Pure; no I/O. Implements spec sections 7.1-7.3 on top of TS 23.038 (alphabets, DCS) and
TS 23.040 section 9.2.3.24.1 (concatenation with an 8-bit reference): a caller's information
elements, such as application ports (9.2.3.24.4), go in every part beside it.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from drivers.gsm.alphabet import ESC, decode_gsm, encode_gsm, is_gsm
from drivers.gsm.dcs import (
    Alphabet,
    check_octet,
    check_sendable,
    dcs_alphabet,
    dcs_for,
    with_class,
)
from drivers.gsm.errors import GsmError, MessageTooLong
from drivers.gsm.parts import EncodedPart
from drivers.gsm.sanitise import ParsingType, sanitise
from drivers.gsm.udh import CONCAT_UDH_LENGTH, check_udh, concat_ie, whole_udh

USER_DATA_OCTETS = 140  # TS 23.040 9.2.3.16: TP-UD holds at most 140 octets
MAX_TOTAL_PARTS = 255  # the concatenation IE counts parts in one octet
# The members compared for every message, bound once: reading a member off its Enum class runs a
# Python-level descriptor in Python 3.11 (about 0.1 us each time).
_GSM7, _UCS2 = Alphabet.GSM7, Alphabet.UCS2
_AUTO_DETECT = ParsingType.AUTO_DETECT


class EncodedMessage(msgspec.Struct, frozen=True):
    """A whole message ready to send: the text as sent (after sanitising; for 8-bit data its
    hex), the alphabet chosen and one or more parts."""

    text: str
    alphabet: Alphabet
    parts: tuple[EncodedPart, ...]


def part_capacity(alphabet: Alphabet, header_octets: int) -> int:
    """Payload bytes (septets for GSM7, octets otherwise) that fit in one part beside a whole
    header of `header_octets` (UDHL included); 7-bit text starts on the septet after the
    header's fill bits (TS 23.040 9.2.3.24)."""
    if alphabet is _GSM7:
        header_septets = (header_octets * 8 + 6) // 7
        return (USER_DATA_OCTETS * 8) // 7 - header_septets
    room = USER_DATA_OCTETS - header_octets
    return room - room % 2 if alphabet is _UCS2 else room


def _split(data: bytes, alphabet: Alphabet, capacity: int) -> list[bytes]:
    """Cut `data` into chunks of at most `capacity`, never between an ESC and its code nor
    between the halves of a UTF-16 surrogate pair."""
    chunks: list[bytes] = []
    start, total = 0, len(data)
    while start < total:
        end = min(start + capacity, total)
        if end < total:
            if alphabet is _GSM7 and data[end - 1] == ESC:
                end -= 1
            elif alphabet is _UCS2 and 0xD8 <= data[end - 2] <= 0xDB:
                end -= 2
        chunks.append(data[start:end])
        start = end
    return chunks


def _payload(
    text: str, parsing: ParsingType, dcs: int | None, message_class: int | None
) -> tuple[str, Alphabet, int, bytes]:
    if dcs is None:
        text = sanitise(text, parsing)
        alphabet = _UCS2
        if parsing is not _AUTO_DETECT or is_gsm(text):
            alphabet = _GSM7
        dcs = dcs_for(alphabet)
    else:
        check_sendable(dcs)
        alphabet = dcs_alphabet(dcs)
        if alphabet is _GSM7:
            text = sanitise(text, parsing)
    if message_class is not None:
        dcs = with_class(dcs, message_class)
    if alphabet is _GSM7:
        return text, alphabet, dcs, encode_gsm(text)
    if alphabet is _UCS2:
        try:
            return text, alphabet, dcs, text.encode("utf-16-be")
        except UnicodeEncodeError as exc:
            raise GsmError(f"text holds an unpaired surrogate at position {exc.start}") from exc
    try:
        data = bytes.fromhex(text)
    except ValueError as exc:
        raise GsmError("8-bit data must be given as hex octets") from exc
    return data.hex().upper(), alphabet, dcs, data


def encode_message(
    text: str,
    *,
    parsing: ParsingType = ParsingType.NONE,
    reference: int = 0,
    max_parts: int = 6,
    dcs: int | None = None,
    udh: bytes = b"",
    elements: bytes = b"",
    message_class: int | None = None,
) -> EncodedMessage:
    """Encode `text` as one part or as concatenated parts (spec 7.1-7.3).

    `dcs` overrides the alphabet detection (with 8-bit data the text is hex octets); `udh` is a
    whole user header including UDHL and then the message must fit in one part; `elements` are
    information elements (no UDHL) that go in every part, after the concatenation IE of a
    concatenated message. `message_class` sets the TP-DCS message class 0..3 (0: a flash SMS).
    Raises NonGsmCharacter, MessageTooLong or another GsmError.
    """
    if not isinstance(parsing, ParsingType):
        parsing = ParsingType(parsing)  # a plain string from a caller; an enum call costs 0.5 us
    check_octet("concatenation reference", reference)
    if max_parts < 1:
        raise GsmError(f"max_parts must be at least 1, not {max_parts}")
    check_udh(udh)
    # Without elements a caller's header goes as given: one of no elements (UDHL 0) too.
    single_udh = whole_udh(udh[1:] + elements) if elements else udh
    if len(single_udh) > USER_DATA_OCTETS:
        raise GsmError(f"a user data header of {len(single_udh)} octets does not fit in an SMS")
    text, alphabet, dcs, data = _payload(text, parsing, dcs, message_class)

    single = part_capacity(alphabet, len(single_udh))
    if len(data) <= single:
        part = EncodedPart(dcs=dcs, udh=single_udh, payload=data)
        return EncodedMessage(text, alphabet, (part,))
    header = CONCAT_UDH_LENGTH + len(elements)
    if udh:
        # Concatenation would need its IE beside the caller's header; report what that takes.
        # A part holds at least one ESC pair or surrogate pair, so that the count comes to an
        # end even when the header leaves no room (a 2-octet chunk could never hold an emoji).
        capacity = max(part_capacity(alphabet, len(udh) + header - 1), 4)
        raise MessageTooLong(len(_split(data, alphabet, capacity)), 1)
    capacity = part_capacity(alphabet, header)
    if capacity < 4:  # a part must hold an ESC pair or a surrogate pair
        raise GsmError(f"a user data header of {header} octets leaves no room for text")

    chunks = _split(data, alphabet, capacity)
    total = len(chunks)
    if total > min(max_parts, MAX_TOTAL_PARTS):
        raise MessageTooLong(total, min(max_parts, MAX_TOTAL_PARTS))
    parts = tuple(
        EncodedPart(
            dcs=dcs, udh=whole_udh(concat_ie(reference, total, seq) + elements), payload=chunk
        )
        for seq, chunk in enumerate(chunks, start=1)
    )
    return EncodedMessage(text, alphabet, parts)


def _decode_payload(alphabet: Alphabet, payload: bytes) -> str:
    if alphabet is _GSM7:
        return decode_gsm(payload)
    if alphabet is _UCS2:
        # Received text: a broken pair or an odd octet shows as U+FFFD rather than losing the SMS.
        return payload.decode("utf-16-be", errors="replace")
    return payload.hex().upper()


def decode_text(part: EncodedPart) -> str:
    """The part's payload as text (8-bit data as upper-case hex)."""
    return _decode_payload(dcs_alphabet(part.dcs), part.payload)


def decode_concatenated(parts: Sequence[EncodedPart]) -> str:
    """The text of parts in sequence order, decoded as one payload so that an ESC pair or a
    surrogate pair that another sender split across parts still decodes whole."""
    alphabets = {dcs_alphabet(part.dcs) for part in parts}
    if len(alphabets) == 1:
        return _decode_payload(alphabets.pop(), b"".join(part.payload for part in parts))
    return "".join(decode_text(part) for part in parts)


def concatenated_octets(parts: Sequence[EncodedPart]) -> bytes | None:
    """The payloads of parts that all carry 8-bit data, joined in sequence order (what
    `decode_concatenated` shows as hex); None when any part holds text."""
    if all(dcs_alphabet(part.dcs) is Alphabet.DATA8 for part in parts):
        return b"".join(part.payload for part in parts)
    return None
