"""Which modems have read their whole storage (the SIM) since the gateway started.

A status report or an MO part that came while the gateway was down waits on its modem's SIM
until the modem is up again and reads it (`drivers.events.StorageRead`); once that read is
committed, the sweeps that stop waiting for a report (`edgegw.pipeline.reports`) or for the
rest of a long MO (`edgegw.pipeline.inbound`) need not hold back for that modem any longer,
once SETTLE has passed since the start: a modem that was switched off with the box has its
reports and MO parts held by the network, which delivers them once the modem is registered
again (TS 23.040, the Messages-Waiting and Alert-SC procedures), after its first read of the SIM.
Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Callable

# Seconds after a start before a modem's first read of its SIM ends the wait: time for the
# network to deliver what it held while the modem was off (a start of the box, a power cut).
SETTLE = 300.0


class StorageReads:
    """The modems whose storage was read whole and committed since the start, and who to wake
    when one more is."""

    def __init__(self) -> None:
        self._read: set[str] = set()
        self._wakes: list[Callable[[], None]] = []

    def subscribe(self, wake: Callable[[], None]) -> None:
        self._wakes.append(wake)

    def read(self, modem: str) -> None:
        """What `modem`'s storage held at its first whole read is committed."""
        if modem in self._read:
            return
        self._read.add(modem)
        for wake in self._wakes:
            wake()

    def released(self, started: float, wait: float, now: float) -> tuple[str, ...] | None:
        """The modems whose stored reports and parts from before the start (at `started`) need
        not be waited for at `now`: from SETTLE after the start (at most `wait`), those that read
        their storage whole; None once `wait` has passed since the start, for every modem (one
        that never came up, or left the config)."""
        if now >= started + wait:
            return None
        if now < started + min(wait, SETTLE):
            return ()
        return tuple(sorted(self._read))

    @staticmethod
    def next_release(started: float, wait: float, now: float) -> float | None:
        """When `released` next changes by time alone (a modem's read changes it at once, and
        wakes the subscribers): the end of SETTLE, then the end of `wait`; None after both."""
        return next((at for at in (started + min(wait, SETTLE), started + wait) if at > now), None)
