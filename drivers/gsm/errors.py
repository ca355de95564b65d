"""The GSM codec's errors: one base type, `GsmError`, for every malformed input.

Raised by the pure codecs only; never wraps I/O. Covers TS 23.038 (alphabet) and TS 23.040 (TPDUs).
"""

from __future__ import annotations


class GsmError(ValueError):
    """Input that the GSM codecs cannot encode or parse."""


class NonGsmCharacter(GsmError):
    """A character outside the GSM 03.38 default alphabet and its extension table."""

    def __init__(self, char: str, index: int) -> None:
        super().__init__(f"character {char!r} at position {index} is not in the GSM 03.38 alphabet")
        self.char = char
        self.index = index


class MessageTooLong(GsmError):
    """The text needs more parts than allowed (spec section 7.1: at most 6)."""

    def __init__(self, parts: int, max_parts: int) -> None:
        super().__init__(f"message needs {parts} parts, at most {max_parts} allowed")
        self.parts = parts
        self.max_parts = max_parts
