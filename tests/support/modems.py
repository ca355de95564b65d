"""Modem doubles for the pipeline tests: they speak drivers.modem's interface in trio's virtual
time and never touch a serial port. TS 23.040 9.2.3.6: the TP-MR counts mod 256."""

from __future__ import annotations

import math

import trio

from drivers.events import (
    InboundSms,
    ModemEvent,
    ModemState,
    RegistrationChanged,
    StatusReportReceived,
    StorageRead,
)
from drivers.modem import Health, OutgoingPart


class ReportingModem:
    """Sends in one virtual second, TP-MR counting mod 256 from `first_reference`; every sent
    part is remembered so the test can report on it. A test may keep one across a gateway
    restart, as a modem outlives it, so its TP-MR counter carries on. It is ready from the
    start, or from trio time `ready_at` on; `read_storage` emits what its SIM holds."""

    def __init__(self, name: str, first_reference: int = 0, ready_at: float | None = None) -> None:
        self.name = name
        self.ready_at = ready_at
        self.sent: list[tuple[OutgoingPart, int, float]] = []  # part, TP-MR, trio time
        self._reference = first_reference
        self._stored, self._events = trio.open_memory_channel[ModemEvent](math.inf)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        await trio.sleep_forever()

    async def send(self, outgoing: OutgoingPart) -> int:
        await trio.sleep(1.0)
        reference = self._reference
        self._reference = (self._reference + 1) % 256
        self.sent.append((outgoing, reference, trio.current_time()))
        return reference

    def register(self) -> None:
        """The modem registers on the network now (the driver reads it at its start)."""
        self._stored.send_nowait(RegistrationChanged(modem=self.name, registered=True))

    def read_storage(self, *stored: InboundSms | StatusReportReceived) -> None:
        """The driver's first whole read of the SIM after a start, which held `stored`."""
        for event in (*stored, StorageRead(modem=self.name)):
            self._stored.send_nowait(event)

    def deliver(self, event: InboundSms | StatusReportReceived) -> None:
        """The network delivers `event` to the modem now, after its first read of the SIM (what
        it held while the modem was off comes once the modem is registered again)."""
        self._stored.send_nowait(event)

    async def acknowledge(self, event: InboundSms | StatusReportReceived) -> None:
        return None

    def health(self) -> Health:
        ready = self.ready_at is None or trio.current_time() >= self.ready_at
        return Health(state=ModemState.READY if ready else ModemState.STARTING)

    @property
    def events(self) -> trio.MemoryReceiveChannel[ModemEvent]:
        return self._events
