"""The GSM 7-bit default alphabet and its extension table, as unpacked septet values.

Pure and table-driven (str.translate and one regex, no per-character Python loop); no I/O.
Implements 3GPP TS 23.038 section 6.2.1 and its extension table 6.2.1.1 (spec Appendix A).
"""

from __future__ import annotations

import re

from drivers.gsm.errors import GsmError, NonGsmCharacter

ESC = 0x1B

# Index = septet value. The ESC position holds a placeholder that no text character maps to.
BASIC_TABLE = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ"
    " !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
EXTENSION_TABLE: dict[int, str] = {
    0x0A: "\f",
    0x14: "^",
    0x28: "{",
    0x29: "}",
    0x2F: "\\",
    0x3C: "[",
    0x3D: "~",
    0x3E: "]",
    0x40: "|",
    0x65: "€",
}

# Text -> septet values as code points 0..127, so that `.encode("latin-1")` yields the septets.
_ENCODE: dict[int, str] = {ord(c): chr(v) for v, c in enumerate(BASIC_TABLE) if v != ESC}
_ENCODE.update({ord(c): f"\x1b{chr(v)}" for v, c in EXTENSION_TABLE.items()})
# Septet value (as a code point) -> text, for runs without ESC.
_DECODE_BASIC: dict[int, str] = {v: c for v, c in enumerate(BASIC_TABLE) if v != ESC}

GSM_CHARACTERS = frozenset(chr(c) for c in _ENCODE)
NON_GSM = re.compile("[^" + re.escape("".join(sorted(GSM_CHARACTERS))) + "]")
_EXTENSION_CHARACTERS = re.compile("[" + re.escape("".join(EXTENSION_TABLE.values())) + "]")
# An ESC and the code after it (none when the ESC ends the text).
_ESCAPED = re.compile("\x1b(.?)", re.DOTALL)


def first_non_gsm(text: str) -> NonGsmCharacter | None:
    """The error for the first character that has no GSM 7-bit encoding, or None."""
    found = NON_GSM.search(text)
    if found is None:
        return None
    return NonGsmCharacter(found.group(), found.start())


def is_gsm(text: str) -> bool:
    """True when every character is in the basic or the extension table."""
    return NON_GSM.search(text) is None


def gsm_length(text: str) -> int:
    """Septets the text takes, extension characters counting two (ESC + code)."""
    error = first_non_gsm(text)
    if error is not None:
        raise error
    return len(text) + len(_EXTENSION_CHARACTERS.findall(text))


def encode_gsm(text: str) -> bytes:
    """Septet values, one per byte, with ESC pairs for extension characters."""
    error = first_non_gsm(text)
    if error is not None:
        raise error
    return text.translate(_ENCODE).encode("latin-1")


def _decode_escaped(match: re.Match[str]) -> str:
    code = match.group(1)
    if not code or code == "\x1b":
        # TS 23.038 6.2.1.1: ESC ESC is reserved and shown as a space; a dangling ESC likewise.
        return " "
    # TS 23.038 6.2.1.1: a code missing from the extension table shows the basic-table character.
    return EXTENSION_TABLE.get(ord(code)) or _DECODE_BASIC[ord(code)]


def decode_gsm(septets: bytes) -> str:
    """Text from septet values (one per byte); values above 127 raise GsmError."""
    if not septets.isascii():
        raise GsmError("septet values must be below 128")
    raw = septets.decode("latin-1")
    if "\x1b" not in raw:
        return raw.translate(_DECODE_BASIC)
    pieces: list[str] = []
    start = 0
    for match in _ESCAPED.finditer(raw):
        pieces.append(raw[start : match.start()].translate(_DECODE_BASIC))
        pieces.append(_decode_escaped(match))
        start = match.end()
    pieces.append(raw[start:].translate(_DECODE_BASIC))
    return "".join(pieces)
