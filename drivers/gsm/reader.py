"""A bounded reader over one TPDU: every read past the end raises GsmError.

Pure; no I/O. Serves the TS 23.040 section 9.2 parsers, which must reject truncated and
overlong PDUs instead of guessing.
"""

from __future__ import annotations

from drivers.gsm.errors import GsmError


class Reader:
    """Reads octets from the front of `data`; `finish()` insists nothing is left over."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0

    @property
    def remaining(self) -> int:
        return len(self._data) - self._pos

    def octet(self) -> int:
        if self._pos >= len(self._data):
            raise GsmError(f"PDU truncated at octet {self._pos}")
        value = self._data[self._pos]
        self._pos += 1
        return value

    def take(self, count: int) -> bytes:
        end = self._pos + count
        if end > len(self._data):
            raise GsmError(f"PDU truncated: needs {count} octets at offset {self._pos}")
        value = self._data[self._pos : end]
        self._pos = end
        return value

    def rest(self) -> bytes:
        value = self._data[self._pos :]
        self._pos = len(self._data)
        return value

    def finish(self) -> None:
        if self._pos != len(self._data):
            raise GsmError(f"{self.remaining} unexpected octets after the end of the PDU")
