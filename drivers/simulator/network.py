"""The simulated network: where the SMS a simulated modem sends end up, for tests to inspect,
and what becomes of them (the TP-ST of their status reports, and when those come).

Trio-aware but does no I/O of its own except appending to the optional record file (one JSON
line per SMS). Holds SMS-SUBMITs as 3GPP TS 23.040 section 9.2.2.2 describes them; outcomes are
TP-ST values of section 9.2.3.15.
"""

from __future__ import annotations

from typing import Final

import msgspec
import trio

from drivers.simulator.sent import SentSms


class SimulatedNetwork:
    """The SMS the modems using this network sent, in the order the network accepted them: the
    newest `KEPT`, so that a gateway serving with a simulated modem for months does not hold
    every SMS it ever sent (the `record` file keeps them all)."""

    KEPT: Final = 10_000

    def __init__(self) -> None:
        self.sent: list[SentSms] = []
        self.accepted = 0  # SMS taken, also those no longer kept
        self._arrived = trio.Event()
        self._outcomes: dict[str, tuple[int, float | None]] = {}

    def set_outcome(self, recipient: str, status: int, delay: float | None = None) -> None:
        """Status reports for SMS to `recipient` carry TP-ST `status` and come after `delay`
        seconds (None: the modem's `report_delay`; math.inf: never)."""
        if not 0 <= status <= 255:
            raise ValueError(f"TP-ST is one octet, not {status}")
        if delay is not None and delay < 0:
            raise ValueError("delay must not be negative")
        self._outcomes[recipient] = (status, delay)

    def outcome(
        self, recipient: str, *, status: int, delay: float | None
    ) -> tuple[int, float | None]:
        """The (TP-ST, delay) for `recipient`: its override, else the modem's `status`/`delay`."""
        override = self._outcomes.get(recipient)
        if override is None:
            return status, delay
        chosen, chosen_delay = override
        return chosen, delay if chosen_delay is None else chosen_delay

    async def accept(self, sms: SentSms, record: str | None = None) -> None:
        """Take one SMS; with `record`, append it to that file and flush before returning."""
        if record is not None:
            line = msgspec.json.encode(sms) + b"\n"
            await trio.to_thread.run_sync(_append, record, line)
        self.sent.append(sms)
        self.accepted += 1
        if len(self.sent) > self.KEPT:
            del self.sent[0]
        self._arrived.set()
        self._arrived = trio.Event()

    async def wait_sent(self, count: int) -> list[SentSms]:
        """Wait until at least `count` SMS were sent; return those kept."""
        while self.accepted < count:
            await self._arrived.wait()
        return list(self.sent)


def _append(path: str, line: bytes) -> None:
    with open(path, "ab") as record:
        record.write(line)
        record.flush()
