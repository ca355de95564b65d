"""Which modems have read their whole storage (the SIM) since the gateway started, and since
when each is registered on the network.

A status report or an MO part that came while the gateway was down waits on its modem's SIM
until the modem is up again and reads it (`drivers.events.StorageRead`); what the network held
while the modem was off or out of coverage comes only once the modem is registered again (TS
23.040, the Messages-Waiting and Alert-SC procedures). So the sweeps that stop waiting for a
report (`edgegw.pipeline.reports`) or for the rest of a long MO (`edgegw.pipeline.inbound`)
hold back for a modem after a start until its first read of the SIM is committed and it has
been registered for SETTLE (`drivers.events.RegistrationChanged`): a modem that registers late
(a slow SIM, no coverage, a stick plugged in later) or loses its registration meanwhile holds
its sweep longer, one never registered until the wait's end.
Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Callable

# Seconds a modem must have been registered before its first read of the SIM ends the wait:
# time for the network to deliver what it held while the modem was off (a start of the box, a
# power cut) or out of its reach.
SETTLE = 300.0


class StorageReads:
    """The modems whose storage was read whole and committed since the start, since when each
    is registered, and who to wake when either changes."""

    def __init__(self) -> None:
        self._read: set[str] = set()
        self._registered_since: dict[str, float] = {}
        self._wakes: list[Callable[[], None]] = []

    def subscribe(self, wake: Callable[[], None]) -> None:
        self._wakes.append(wake)

    def read(self, modem: str) -> None:
        """What `modem`'s storage held at its first whole read is committed."""
        if modem in self._read:
            return
        self._read.add(modem)
        self._wake()

    def registration(self, modem: str, registered: bool, at: float) -> None:
        """`modem` became registered at `at`, or stopped being so: its settle starts over at
        its next registration."""
        if not registered:
            self._registered_since.pop(modem, None)
        elif modem not in self._registered_since:
            self._registered_since[modem] = at
        else:
            return
        self._wake()

    def _wake(self) -> None:
        for wake in self._wakes:
            wake()

    def _settled_at(self, modem: str, started: float) -> float | None:
        since = self._registered_since.get(modem)
        return None if since is None else max(since, started) + SETTLE

    def released(self, started: float, wait: float, now: float) -> tuple[str, ...] | None:
        """The modems whose stored reports and parts from before the start (at `started`) need
        not be waited for at `now`: those that read their storage whole and have been
        registered for SETTLE (since the start at least); None once `wait` has passed since the
        start, for every modem (one that never came up, or left the config)."""
        if now >= started + wait:
            return None
        return tuple(
            sorted(
                modem
                for modem in self._read
                if (settled := self._settled_at(modem, started)) is not None and now >= settled
            )
        )

    def next_release(self, started: float, wait: float, now: float) -> float | None:
        """When `released` next changes by time alone (a read or a registration changes it at
        once, and wakes the subscribers): a registered modem's end of SETTLE, then the end of
        `wait`; None after both."""
        settles = (self._settled_at(modem, started) for modem in self._registered_since)
        ahead = [at for at in (*settles, started + wait) if at is not None and at > now]
        return min(ahead, default=None)
