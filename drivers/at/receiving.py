"""The AT driver's decisions about receiving, each a pure object or function the shell consults.

Pure: no trio, no I/O; time is the `now` argument. When the storages are swept for messages not
yet acknowledged (AT+CMGL=4, TS 27.005 section 3.4.2) and which ones: the one in use, then every
other one an indication pointed at (status reports may wait in "SR", section 3.4.1).
"""

from __future__ import annotations

import math


class SweepSchedule:
    """Sweeps happen at once on a new connection, then `interval` seconds after the last one
    (0: only when asked, after a re-initialisation, a deferred delete or a lost indication)."""

    def __init__(self, interval: float, now: float) -> None:
        self.interval = interval
        self.next_at = now

    def due(self, now: float) -> bool:
        return now >= self.next_at

    def swept(self, now: float) -> None:
        self.next_at = now + self.interval if self.interval > 0 else math.inf


class StoragesSeen:
    """The storages a sweep lists: the one in use first, then, in name order, every other one
    an indication (+CMTI, +CDSI) has pointed at on any connection."""

    def __init__(self) -> None:
        self._seen: set[str] = set()

    def indicated(self, storage: str) -> None:
        self._seen.add(storage)

    def sweep_order(self, in_use: str) -> list[str]:
        return [in_use, *sorted(self._seen - {in_use})]
